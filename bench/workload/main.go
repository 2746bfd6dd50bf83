// Command workload is the file-heavy benchmark workload: thousands of small
// files created, read, rewritten in place, renamed and deleted, plus one
// large sequential write. It prints its wall time in seconds.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir := flag.String("dir", "", "folder to work in")
	n := flag.Int("files", 5000, "small files")
	bigMB := flag.Int("big-mb", 200, "size of the sequential write")
	phases := flag.Bool("phases", false, "also print each phase's time on stderr")
	fileBytes := flag.Int("file-bytes", 1000, "size of each small file")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "workload: -dir is required")
		os.Exit(2)
	}
	start := time.Now()
	last := start
	phase := func(name string) {
		if *phases {
			fmt.Fprintf(os.Stderr, "%-8s %.3f s\n", name, time.Since(last).Seconds())
		}
		last = time.Now()
	}
	body := bytes.Repeat([]byte("line of a small document\n"), *fileBytes/25+1)[:*fileBytes]
	path := func(i int) string {
		return filepath.Join(*dir, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d.txt", i))
	}
	for i := 0; i < 50; i++ {
		must(os.MkdirAll(filepath.Join(*dir, fmt.Sprintf("d%02d", i)), 0o755))
	}
	for i := 0; i < *n; i++ {
		must(os.WriteFile(path(i), body, 0o644))
	}
	phase("create")
	for i := 0; i < *n; i++ {
		_, err := os.ReadFile(path(i))
		must(err)
	}
	phase("read")
	for i := 0; i < *n; i++ {
		f, err := os.OpenFile(path(i), os.O_WRONLY, 0)
		must(err)
		_, err = f.WriteAt([]byte("EDITED"), 0)
		must(err)
		must(f.Close())
	}
	phase("rewrite")
	for i := 0; i < *n; i++ {
		must(os.Rename(path(i), path(i)+".old"))
	}
	phase("rename")
	for i := 0; i < *n; i++ {
		must(os.Remove(path(i) + ".old"))
	}
	phase("delete")
	big, err := os.Create(filepath.Join(*dir, "big.bin"))
	must(err)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for i := 0; i < *bigMB; i++ {
		_, err := big.Write(chunk)
		must(err)
	}
	must(big.Close())
	phase("big")
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}
