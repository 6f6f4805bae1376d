// Command fetch is the HTTP client of the test cluster's client image
// (scripts/k8s-images.sh): a static binary, where a static busybox's wget
// needs the NSS libraries the image does not have. It GETs one URL and
// prints "HTTP <code>" and the body; with no HTTP answer it prints
// "error: <reason>" and exits 1. TLS is not verified (the test cluster's
// API server has a throwaway CA).
//
//	fetch [-t timeout] URL
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("t", 5*time.Second, "timeout of the whole request")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: fetch [-t timeout] URL")
		os.Exit(2)
	}
	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
	}
	resp, err := client.Get(flag.Arg(0))
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	fmt.Printf("HTTP %d\n%s", resp.StatusCode, body)
}
