// Command cpu-json is a CPU-bound guest: it generates a structure, then
// repeatedly marshals it to JSON, unmarshals it back and changes it, and
// prints a digest of everything it encoded.
//
// Usage: cpu-json [iterations]   (default 300)
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
)

// Item is one record of the generated document.
type Item struct {
	ID     int               `json:"id"`
	Name   string            `json:"name"`
	Price  float64           `json:"price"`
	Tags   []string          `json:"tags"`
	Attrs  map[string]string `json:"attrs"`
	Active bool              `json:"active"`
	Parent *Ref              `json:"parent,omitempty"`
}

// Ref points at another record.
type Ref struct {
	ID    int    `json:"id"`
	Label string `json:"label"`
}

// Doc is the document that goes round trip.
type Doc struct {
	Version int            `json:"version"`
	Title   string         `json:"title"`
	Items   []Item         `json:"items"`
	Totals  map[string]int `json:"totals"`
}

func generate(rng *rand.Rand, n int) Doc {
	d := Doc{Version: 1, Title: "inventory \"τ\" <&>", Totals: map[string]int{}}
	for i := 0; i < n; i++ {
		it := Item{
			ID:     i,
			Name:   "item-" + strconv.Itoa(rng.IntN(100000)),
			Price:  float64(rng.IntN(1000000)) / 100,
			Active: rng.IntN(2) == 0,
			Attrs:  map[string]string{},
		}
		for j := rng.IntN(5); j > 0; j-- {
			it.Tags = append(it.Tags, "t"+strconv.Itoa(rng.IntN(50)))
		}
		for j := rng.IntN(4); j > 0; j-- {
			it.Attrs["k"+strconv.Itoa(rng.IntN(20))] = strconv.FormatFloat(rng.Float64(), 'g', -1, 64)
		}
		if i > 0 && rng.IntN(3) == 0 {
			it.Parent = &Ref{ID: rng.IntN(i), Label: "p\n" + strconv.Itoa(i)}
		}
		d.Items = append(d.Items, it)
	}
	return d
}

func main() {
	iters := 300
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "cpu-json: bad iterations %q\n", os.Args[1])
			os.Exit(2)
		}
		iters = v
	}
	rng := rand.New(rand.NewPCG(7, 11))
	doc := generate(rng, 200)
	digest := sha256.New()
	var size int
	for i := 0; i < iters; i++ {
		b, err := json.Marshal(doc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpu-json: marshal:", err)
			os.Exit(1)
		}
		size += len(b)
		digest.Write(b)
		var back Doc
		if err := json.Unmarshal(b, &back); err != nil {
			fmt.Fprintln(os.Stderr, "cpu-json: unmarshal:", err)
			os.Exit(1)
		}
		// Change the document a little so every iteration encodes
		// something new.
		back.Version++
		k := i % len(back.Items)
		back.Items[k].Price += 0.25
		back.Items[k].Active = !back.Items[k].Active
		back.Totals["iter"+strconv.Itoa(i%17)] += len(b)
		doc = back
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, mustMarshal(doc.Items[:3]), "", "  "); err != nil {
		fmt.Fprintln(os.Stderr, "cpu-json: indent:", err)
		os.Exit(1)
	}
	digest.Write(pretty.Bytes())
	fmt.Printf("json iters=%d bytes=%d version=%d sha256=%x\n", iters, size, doc.Version, digest.Sum(nil))
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu-json: marshal:", err)
		os.Exit(1)
	}
	return b
}
