package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"unicode/utf8"

	"io"

	"golang.org/x/text/collate"
	"golang.org/x/text/internal/colltab"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
)

// writeElems prints the collation elements of s (which must be one lookup
// unit) as PRIMARY or PRIMARY:CCC, in hex.
func writeElems(w io.Writer, t *colltab.Table, s string) {
	elems, n := t.AppendNextString(nil, s)
	if n != len(s) {
		panic(fmt.Sprintf("%q: consumed %d of %d", s, n, len(s)))
	}
	for _, e := range elems {
		if e.CCC() != 0 {
			fmt.Fprintf(w, " %X:%X", e.Primary(), e.CCC())
		} else {
			fmt.Fprintf(w, " %X", e.Primary())
		}
	}
	fmt.Fprintln(w)
}

func main() {
	c := collate.New(language.English, collate.Loose)
	buf := new(collate.Buffer)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	mode := os.Args[1]
	switch mode {
	case "singles":
		t := c.RootTable()
		for r := rune(0); r <= 0x10FFFF; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			fmt.Fprintf(w, "%X", r)
			writeElems(w, t, string(r))
		}
	case "contractions":
		t := c.RootTable()
		for r := rune(0); r <= 0x10FFFF; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			for _, suf := range t.ContractionsOf(r) {
				if !utf8.Valid(suf) {
					continue
				}
				s := string(r) + string(suf)
				for _, x := range s {
					fmt.Fprintf(w, "%X ", x)
				}
				fmt.Fprint(w, ";")
				writeElems(w, t, s)
			}
		}
	case "ccc":
		// Code points whose NFD properties differ from a plain starter:
		// CP LEAD_CCC TRAIL_CCC BOUNDARY_BEFORE (hex, 0/1).
		for r := rune(0); r <= 0x10FFFF; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			p := norm.NFD.PropertiesString(string(r))
			bb := 0
			if p.BoundaryBefore() {
				bb = 1
			}
			if p.LeadCCC() != 0 || p.TrailCCC() != 0 || bb == 0 {
				fmt.Fprintf(w, "%X %X %X %d\n", r, p.LeadCCC(), p.TrailCCC(), bb)
			}
		}
	case "hash":
		// stdin: one hex-encoded input per line; prints the input, the hex
		// key after Vitess's trailing-space trim ("-" when empty) and the
		// hex MD5 of the key (the unicode_loose_md5 keyspace id).
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			in, _ := hex.DecodeString(sc.Text())
			k := c.Key(buf, bytes.TrimRight(in, " "))
			sum := md5.Sum(k)
			ks := hex.EncodeToString(k)
			if ks == "" {
				ks = "-"
			}
			fmt.Fprintf(w, "%x %s %x\n", in, ks, sum)
			buf.Reset()
		}
	}
}
