#!/bin/bash
# Writes the weights of MariaDB's utf8mb4_general_ci that differ from the
# code point (see README.md). Usage: dump.sh HOST PORT USER > general_ci.bin
set -euo pipefail
host=${1:-127.0.0.1} port=${2:-3306} user=${3:-root}
mysql -h"$host" -P"$port" -u"$user" -N -B -e "
  select seq, conv(hex(weight_string(
           convert(char(seq using utf16) using utf8mb4) collate utf8mb4_general_ci)), 16, 10)
  from seq_0_to_65535
  where seq < 55296 or seq > 57343" mysql |
python3 -c '
import struct, sys
out = bytearray()
for line in sys.stdin:
    cp, w = map(int, line.split())
    if w > 0xFFFF:
        sys.exit(f"code point {cp}: weight {w:#x} is wider than 16 bits")
    if w != cp:
        out += struct.pack("<HH", cp, w)
sys.stdout.buffer.write(out)
'
