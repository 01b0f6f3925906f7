#!/usr/bin/env python3
"""Packs the generator's text dumps into src/vschema/unicode_loose.bin.

Input: singles.txt ("CP E1 E2 ..." per code point), contractions.txt
("CP CP ... ; E1 E2 ...") and ccc.txt ("CP LEAD TRAIL BOUNDARY"), hex, where each collation element E is PRIMARY or
PRIMARY:CCC. Output format (all integers unsigned LEB128):
  b"SGUL2"
  runs:         count, then (start, length, offset) -- primary = cp + offset
  explicit:     count, then (cp delta from previous, n, e1..en)
  contractions: count, then (k, cp1..cpk, n, e1..en)
  marks:        count, then (cp delta from previous, lead ccc, trail ccc)
                for code points whose NFD form starts or ends with a mark
An element is packed as primary | ccc << 24. Elements of a unit whose
elements all have combining class 0 are kept only if their primary is
non-zero (the others cannot affect the key or the re-ordering of marks).
Code points in neither table have no primary weight (ignorable).
"""
import sys


def leb(n, out):
    assert n >= 0
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def elems(tokens):
    out = []
    for t in tokens:
        p, _, c = t.partition(":")
        out.append(int(p, 16) | (int(c, 16) << 24 if c else 0))
    if all(e >> 24 == 0 for e in out):
        out = [e for e in out if e]
    return out


def main(singles, contractions, ccc, dest):
    rows = []
    for line in open(singles):
        p = line.split()
        rows.append((int(p[0], 16), elems(p[1:])))
    # Long runs whose one weight is cp + constant (implicit weights) become ranges.
    runs, explicit = [], []
    i = 0
    while i < len(rows):
        cp, ws = rows[i]
        if len(ws) == 1 and ws[0] >= cp:
            off = ws[0] - cp
            j = i
            while (j + 1 < len(rows) and rows[j + 1][0] == rows[j][0] + 1
                   and len(rows[j + 1][1]) == 1 and rows[j + 1][1][0] - rows[j + 1][0] == off):
                j += 1
            if j - i + 1 >= 8:
                runs.append((cp, j - i + 1, off))
                i = j + 1
                continue
        if ws:
            explicit.append((cp, ws))
        i += 1
    out = bytearray(b"SGUL3")
    leb(len(runs), out)
    for start, n, off in runs:
        leb(start, out); leb(n, out); leb(off, out)
    leb(len(explicit), out)
    prev = 0
    for cp, ws in explicit:
        leb(cp - prev, out); prev = cp
        leb(len(ws), out)
        for w in ws:
            leb(w, out)
    cons = []
    for line in open(contractions):
        left, right = line.split(";")
        cons.append(([int(x, 16) for x in left.split()], elems(right.split())))
    leb(len(cons), out)
    for cps, ws in cons:
        leb(len(cps), out)
        for c in cps:
            leb(c, out)
        leb(len(ws), out)
        for w in ws:
            leb(w, out)
    marks = []
    for line in open(ccc):
        cp, lead, trail, _ = line.split()
        if int(lead, 16) or int(trail, 16):
            marks.append((int(cp, 16), int(lead, 16), int(trail, 16)))
    leb(len(marks), out)
    prev = 0
    for cp, lead, trail in marks:
        leb(cp - prev, out); prev = cp
        leb(lead, out); leb(trail, out)
    open(dest, "wb").write(out)
    print(f"{len(runs)} runs, {len(explicit)} explicit, {len(cons)} contractions, "
          f"{len(marks)} marks, {len(out)} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:5])
