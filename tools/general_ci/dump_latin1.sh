#!/bin/bash
# Writes latin1_swedish_ci's weights by the Unicode character each latin1
# byte stands for (see README.md). Usage: dump_latin1.sh HOST PORT USER > latin1_swedish_ci.bin
set -euo pipefail
host=${1:-127.0.0.1} port=${2:-3306} user=${3:-root}
mysql -h"$host" -P"$port" -u"$user" -N -B -e "
  select seq, hex(convert(char(seq using latin1) using utf8mb4)),
         conv(hex(weight_string(char(seq using latin1) collate latin1_swedish_ci)), 16, 10)
  from seq_0_to_255" mysql |
python3 -c '
import struct, sys
out = bytearray()
for line in sys.stdin:
    byte, utf8, w = line.split()
    cp = ord(bytes.fromhex(utf8).decode("utf-8"))
    if int(w) > 0xFF:
        sys.exit(f"byte {byte}: weight {w} is wider than 8 bits")
    out += struct.pack("<IB", cp, int(w))
sys.stdout.buffer.write(out)
'
