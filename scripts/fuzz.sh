#!/usr/bin/env bash
# Runs the cargo-fuzz targets, each for SECONDS (default 600), seeded from
# the golden planner cases, the VSchema examples and sample client packets.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); runs on stable without a
# sanitizer (-s none). Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(sql_text client_packets vschema_json vindex_values)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz

# Seeds.
mkdir -p fuzz/corpus/sql_text fuzz/corpus/vschema_json fuzz/corpus/client_packets fuzz/corpus/vindex_values
python3 - <<'PY'
import json, os, hashlib, struct
def put(d, data):
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
for case in json.load(open("tests/golden/planner_cases.json")):
    put("fuzz/corpus/sql_text", case["query"].encode())
for name in os.listdir("vschema"):
    if name.endswith(".json"):
        put("fuzz/corpus/vschema_json", open(os.path.join("vschema", name), "rb").read())
def pkt(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload
# A handshake response (protocol 4.1, user "app", db "commerce"), queries, a prepare and an execute.
caps = 0x000FA685
hs = struct.pack("<IIB23x", caps, 1 << 24, 45) + b"app\0" + bytes([20]) + b"\x01" * 20 + b"commerce\0mysql_native_password\0"
put("fuzz/corpus/client_packets", pkt(1, hs))
for v in ["Test", "Te\u0301st ", "\u0438\u0323\u0306", "\u4e00\uac00", "-1", "18446744073709551615", "12.5"]:
    put("fuzz/corpus/vindex_values", v.encode())
put("fuzz/corpus/client_packets", pkt(0, b"\x03select 1; select 2") + pkt(0, b"\x0e"))
put("fuzz/corpus/client_packets", pkt(0, b"\x16select ? + ?") + pkt(0, b"\x17" + struct.pack("<IBI", 1, 0, 1) + b"\x00\x01\x08\x00\x08\x00" + struct.pack("<qq", 1, 2)))
PY

for t in "${targets[@]}"; do
  echo "[fuzz] $t for ${secs}s"
  cargo fuzz run -O -s none "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536
done
