"""Packaging for desktop-relay: the library under src/ plus the twistd plugin under twisted/plugins/."""

from setuptools import find_packages, setup

setup(
    name="desktop-relay",
    version="0.1.0",
    description="Per-user Kasm desktops in the browser, relayed by Twisted",
    python_requires=">=3.11",
    package_dir={"": "src", "twisted.plugins": "twisted/plugins"},
    # twisted.plugins is Twisted's namespace for plugins: we ship one module into it,
    # never an __init__.py of our own.
    packages=find_packages("src") + ["twisted.plugins"],
    package_data={"desktop_relay": [
        "web/templates/*.html", "web/static/*", "web/openapi.json", "schema/*.sql",
        "locale/*/LC_MESSAGES/*.po",
    ]},
    install_requires=[
        "twisted[tls]>=24.7",
        "autobahn>=24.4",
        "treq>=24.9",
        "klein>=24.8",
        "docker>=7.1",
        "pyopenssl>=24.0",
        "service-identity>=24.1",
        "attrs>=23.1",
        # Password hashing for local accounts: argon2id via the reference C library.
        "argon2-cffi>=23.1",
        # ID token and JWKS handling for OpenID Connect (JWS/JWK/JWT per the RFCs), by the Authlib
        # authors; maintained, typed, and refuses "none" and key/algorithm confusion.
        "joserfc>=1.0",
        # Prometheus metrics: the reference client, well kept by the Prometheus project; its
        # Twisted MetricsResource serves /metrics, its registries keep each relay's apart.
        "prometheus_client>=0.17",
        # Languages: gettext catalogs (.po read at start-up), Accept-Language negotiation, and
        # numbers, dates and plural rules per locale from CLDR; the Pallets' standard for Python.
        "Babel>=2.12",
        # The pages' templates: autoescaping HTML, and Babel extracts their strings (jinja2.ext).
        "Jinja2>=3.1",
        # Lesson times from the school's timetable export (.ics): icalendar parses RFC 5545 (the
        # Plone/collective project, typed and maintained since 2005); recurring-ical-events, by
        # the same circle, expands RRULE/RDATE/EXDATE and moved occurrences, which is where
        # hand-written calendar code goes wrong.
        "icalendar>=6.0",
        "recurring-ical-events>=3.3",
    ],
    extras_require={
        "test": [
            "pytest>=8", "pytest-twisted>=1.14", "websockets>=12",
            # A real OpenID provider process for tests/oidc (users and claims chosen per test).
            "oidc-provider-mock>=0.3",
            # Drives Debian's /usr/bin/chromium in tests/apache (it never downloads a browser).
            "playwright>=1.40",
            # The OpenAPI document is checked against the 3.1 schema, and the running relay against it.
            "openapi-spec-validator>=0.7", "schemathesis>=4.32",
            # Lint and type checks, run by tox before the tests (ruff.toml, mypy.ini).
            "ruff>=0.5", "mypy>=1.10", "mypy-zope>=1.0", "types-docker>=7.1",
        ],
    },
)
