#!/bin/bash
# mmdebstrap --customize-hook for the desktop-relay demo desktop.
# Runs on the build host as root; $1 is the root of the image being built.
# Needs DESKTOP_SRC (this directory) and BUILD_TMP (a scratch dir) in the environment,
# and MMDEBSTRAP_APT_CONFIG (set by mmdebstrap) to fetch novnc from the same mirror.
set -euo pipefail
ROOT=$1
: "${DESKTOP_SRC:?}" "${BUILD_TMP:?}" "${MMDEBSTRAP_APT_CONFIG:?}"

# --- user kasm-user (uid/gid 1000), home owned by it so a volume can be mounted there --
echo 'kasm-user:x:1000:1000:Kasm User,,,:/home/kasm-user:/bin/bash' >> "$ROOT/etc/passwd"
echo 'kasm-user:x:1000:' >> "$ROOT/etc/group"
echo 'kasm-user:*:19000:0:99999:7:::' >> "$ROOT/etc/shadow"
install -d -m 0755 -o 1000 -g 1000 "$ROOT/home/kasm-user" "$ROOT/home/kasm-user/.vnc"

# --- noVNC web files from Debian's novnc package (not installed: it depends on nodejs) --
(cd "$BUILD_TMP" && APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -q -o APT::Sandbox::User=root novnc)
mkdir -p "$BUILD_TMP/novnc"
dpkg-deb -x "$BUILD_TMP"/novnc_*.deb "$BUILD_TMP/novnc"
mkdir -p "$ROOT/usr/share"
cp -a "$BUILD_TMP/novnc/usr/share/novnc" "$ROOT/usr/share/novnc"
RFB_JS="$ROOT/usr/share/novnc/core/rfb.js"
# KasmVNC refuses WebSocket upgrades without Sec-WebSocket-Protocol; offer 'binary' like Kasm's client.
sed -i 's/this\._wsProtocols = options\.wsProtocols || \[\];/this._wsProtocols = options.wsProtocols || ["binary"];/' "$RFB_JS"
grep -q 'options.wsProtocols || \["binary"\]' "$RFB_JS" || { echo "customize: patching $RFB_JS failed" >&2; exit 1; }
# Like KasmVNC, "/" serves the web client itself.
ln -s vnc.html "$ROOT/usr/share/novnc/index.html"

# --- our files ----------------------------------------------------------------------
install -D -m 0755 "$DESKTOP_SRC/vnc_startup.sh" "$ROOT/dockerstartup/vnc_startup.sh"
install -D -m 0644 "$DESKTOP_SRC/kasm_auth.py" "$ROOT/usr/lib/python3/dist-packages/kasm_auth.py"
install -D -m 0644 "$DESKTOP_SRC/twmrc" "$ROOT/etc/desktop-relay/twmrc"
install -D -m 0644 "$DESKTOP_SRC/README.md" "$ROOT/etc/desktop-relay/README.md"
chroot "$ROOT" python3 -m compileall -q /usr/lib/python3/dist-packages/kasm_auth.py

# --- slim down: nothing here needs GL drivers, LLVM, numpy, perl or cpp ----------------
# shellcheck disable=SC2016 # dpkg-query format, not shell
installed() { chroot "$ROOT" dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 == "ii" {print $2}'; }
PURGE=()
for pkg in $(installed); do
    case "$pkg" in
        libgl1-mesa-dri|libllvm*|libz3-*|libdrm-amdgpu1|libdrm-intel1|libdrm-nouveau2|libdrm-radeon1| \
        libglapi-mesa|libglx-mesa0|libgbm1|libwayland-*|libvulkan1|libsensors*|libelf1|libpciaccess0| \
        python3-numpy|libblas3|liblapack3|libgfortran5|libquadmath0| \
        cpp|cpp-12|libisl23|libmpc3|libmpfr6| \
        perl|perl-modules-*|libperl5*|libfile-readbackwards-perl|libgdbm*|menu| \
        python3-jwcrypto|python3-cryptography|python3-cffi-backend|python3-deprecated|python3-wrapt| \
        libxml2|libicu72|libx11-xcb1|libxcb-glx0|libxcb-randr0|libxcb-xfixes0|libxcb-sync1| \
        libxcb-dri2-0|libxcb-dri3-0|libxcb-present0|libxcb-shm0|libdrm2|libdrm-common|libxshmfence1| \
        python3-six|xauth|tigervnc-tools|libedit2)
            PURGE+=("$pkg") ;;
    esac
done
if [ ${#PURGE[@]} -gt 0 ]; then
    chroot "$ROOT" dpkg --purge --force-depends "${PURGE[@]}" > "$BUILD_TMP/purge.log" 2>&1 ||
        { cat "$BUILD_TMP/purge.log" >&2; exit 1; }
fi
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/log/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
       "$ROOT"/usr/share/lintian "$ROOT"/usr/share/bash-completion "$ROOT"/etc/machine-id
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true

# --- smoke checks: the image can do what vnc_startup.sh needs -------------------------
for bin in tini openssl Xvnc xkbcomp xsetroot twm xterm websockify python3 bash; do
    chroot "$ROOT" sh -c "command -v $bin" >/dev/null || { echo "customize: $bin missing" >&2; exit 1; }
done
if chroot "$ROOT" ldd /usr/bin/Xvnc /usr/bin/xterm /usr/bin/twm /usr/bin/xsetroot /usr/bin/xkbcomp | grep 'not found'; then
    echo "customize: shared libraries missing after purge" >&2; exit 1
fi
chroot "$ROOT" python3 -W ignore -c 'import kasm_auth, websockify.websocketproxy' \
    || { echo "customize: websockify does not import" >&2; exit 1; }
chroot "$ROOT" websockify --help >/dev/null 2>&1 || { echo "customize: websockify does not run" >&2; exit 1; }

# --- /tmp: empty but for the X socket directory (root-owned and sticky, as X expects) --
# (mmdebstrap runs with --skip=cleanup/tmp so that it keeps this)
find "$ROOT/tmp" -mindepth 1 -delete
install -d -m 1777 "$ROOT/tmp/.X11-unix"
