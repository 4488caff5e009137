package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// checkHealth asks a running bot's /health, for container health checks in
// images without curl. A wildcard listen address is reached on loopback.
func checkHealth(listen string, stdout, stderr io.Writer) int {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, err)
		return 1
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/health")
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "voipbot is not answering: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = stdout.Write(body)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
