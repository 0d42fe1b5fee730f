#!/usr/bin/env bash
# Vendor the MathJax the documentation site renders its math with (no CDN: `make docs` builds offline,
# and a reader's browser needs no network). Writes docs/_static/mathjax/: the single-file TeX->CHTML
# bundle with every TeX extension (so nothing is autoloaded from the network), its woff fonts and
# the licence. Committed (about 1.8 MB); run this only to change the version.
#   bash docs/tools/vendor_mathjax.sh
set -euo pipefail
VERSION=3.2.2
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$HERE/_static/mathjax"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "mathjax@$VERSION" >/dev/null && tar xzf "mathjax-$VERSION.tgz")
rm -rf "$DEST"
mkdir -p "$DEST/output/chtml/fonts"
cp "$WORK/package/es5/tex-chtml-full.js" "$DEST/"
cp -r "$WORK/package/es5/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp "$WORK/package/LICENSE" "$DEST/LICENSE"
echo "MathJax $VERSION (npm package mathjax@$VERSION, es5/tex-chtml-full.js and its woff-v2 fonts)" > "$DEST/VERSION"
du -sh "$DEST"
