// The pages' strings in the reader's language: the server puts this page's catalog in the page
// as JSON (<script type="application/json" id="messages">), chosen as for the page itself. t()
// translates a msgid, tn() picks the plural form for a count; both fill {placeholders}. Loaded
// before the other scripts, which call them. English is the source language: its msgids are the words.
"use strict";

const i18n = (() => {
  const data = JSON.parse(document.getElementById("messages").textContent || "{}");
  const lang = data.lang || document.documentElement.lang || "en";
  const messages = data.messages || {};
  const plurals = new Intl.PluralRules(lang);
  const numbers = new Intl.NumberFormat(lang);

  function fill(words, values) {
    return words.replace(/\{([a-z_]+)\}/g, (whole, name) => {
      if (!values || !(name in values)) { return whole; }
      const value = values[name];
      return typeof value === "number" ? numbers.format(value) : String(value);
    });
  }

  // Two forms (one, other), as gettext orders them for English and German.
  function pluralIndex(count) {
    return plurals.select(count) === "one" ? 0 : 1;
  }

  // A moment (unix seconds) in the reader's locale: "2.12.2026, 09:41" / "12/2/2026, 9:41 AM".
  function dateTime(seconds) {
    return new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "short" }).format(new Date(seconds * 1000));
  }

  // Only the time of day, for something from today.
  function time(seconds) {
    return new Intl.DateTimeFormat(lang, { timeStyle: "short" }).format(new Date(seconds * 1000));
  }

  return { lang, messages, fill, pluralIndex, dateTime, time };
})();

function t(msgid, values) {
  const words = i18n.messages[msgid];
  return i18n.fill(typeof words === "string" && words ? words : msgid, values);
}

function tn(singular, plural, count, values) {
  const forms = i18n.messages[singular];
  const index = i18n.pluralIndex(count);
  const words = Array.isArray(forms) && forms[index] ? forms[index] : (index === 0 ? singular : plural);
  return i18n.fill(words, Object.assign({ count }, values || {}));
}
