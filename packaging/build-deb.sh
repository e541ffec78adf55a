#!/usr/bin/env bash
# Builds the Debian package of mbus: binaries, the systemd unit, /etc/spread.conf, the
# logrotate snippet, man pages and bash completions. Run from anywhere:
#
#   packaging/build-deb.sh            # release build → target/debian/mbus_<version>-1_<arch>.deb
#   PROFILE=dev packaging/build-deb.sh   # from the debug build (quick check; what CI does)
#
# Then:  sudo apt install ./target/debian/mbus_*.deb && sudo systemctl start spread && mbus-status
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked
cargo build --locked --profile "$profile" --bins
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
"target/$dir/mbus-gen-docs" target/gen-docs >/dev/null
cargo deb --locked --no-build --profile "$profile" "$@"
