#!/bin/sh
# Re-fetches the player scripts the pages embed, from the pinned npm releases,
# and rewrites VERSIONS with each file's sha256. Run it from anywhere; bump a
# version here, run it, test the pages in a browser (go test ./internal/browsertest/)
# and commit the result.
set -eu
MPEGTS=1.8.2
HLS=1.6.15
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "mpegts.js@$MPEGTS" "hls.js@$HLS" >/dev/null
mkdir m h
tar xzf "mpegts.js-$MPEGTS.tgz" -C m
tar xzf "hls.js-$HLS.tgz" -C h
cp m/package/dist/mpegts.js "$here/mpegts.js"
cp m/package/dist/mpegts.js.LICENSE.txt "$here/mpegts.js.LICENSE.txt"
cp m/package/LICENSE "$here/mpegts.js.LICENSE"
cp h/package/dist/hls.min.js "$here/hls.min.js"
cp h/package/LICENSE "$here/hls.js.LICENSE"
cd "$here"
{
	echo "# Player scripts embedded in the binary, from npm (see update.sh)."
	echo "# package version file sha256"
	for f in mpegts.js mpegts.js.LICENSE.txt mpegts.js.LICENSE; do
		echo "mpegts.js $MPEGTS $f $(sha256sum "$f" | cut -d' ' -f1)"
	done
	for f in hls.min.js hls.js.LICENSE; do
		echo "hls.js $HLS $f $(sha256sum "$f" | cut -d' ' -f1)"
	done
} >VERSIONS
cat VERSIONS
