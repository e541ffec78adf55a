#!/usr/bin/env bash
# Checks a built mbus .deb: the files a service install needs are in it, /etc/spread.conf is a
# conffile, the maintainer scripts create the account and register the unit.
#   packaging/check-deb.sh target/debian/mbus_*.deb
set -euo pipefail
deb=${1:?usage: check-deb.sh PACKAGE.deb}
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
missing=0
for f in ./usr/sbin/spread ./usr/bin/mbus-status ./usr/bin/eccmgr ./usr/bin/ec_console \
         ./usr/bin/mbus-node ./usr/bin/mbus-passwd ./usr/lib/systemd/system/spread.service \
         ./etc/spread.conf ./etc/logrotate.d/spread ./usr/share/man/man1/spread.1.gz \
         ./usr/share/man/man1/mbus-status.1.gz ./usr/share/doc/mbus/operations.md; do
  grep -qx -- "$f" <<<"$files" || { echo "check-deb: $f missing from $deb"; missing=1; }
done
ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl"
grep -qx /etc/spread.conf "$ctl/conffiles" || { echo "check-deb: /etc/spread.conf is not a conffile"; missing=1; }
grep -q 'adduser --system' "$ctl/postinst" || { echo "check-deb: postinst does not create the spread account"; missing=1; }
grep -q 'spread.service' "$ctl/postinst" || { echo "check-deb: postinst does not register spread.service"; missing=1; }
grep -q '^Depends:.*adduser' "$ctl/control" || { echo "check-deb: no Depends on adduser"; missing=1; }
[ "$missing" = 0 ] && echo "check-deb: $deb ok ($(wc -l <<<"$files") entries)"
exit "$missing"
