// Command crasher is the Go program of the end-to-end crash tests: a small service that
// logs as a real one does, then fails the way the test asks. It runs on the real node of
// the test clusters, packed into the image vigil.test/crashers:1 by e2e/tools/install.sh.
//
//	crasher panic   logs, then dereferences a nil pointer after CRASH_AFTER (default 2s)
//	crasher oom     logs, then allocates and touches memory until the kernel kills it
//	crasher exit0   logs, then exits 0 (a job done, not a crash)
//	crasher serve   logs a heartbeat every second and never fails (the fixed program)
//	crasher config  reads CONFIG (default /etc/checkout/app.yaml: `port: N`, `mode: M`)
//	                at start and logs it every second; mode `fast` makes it dereference
//	                nil after CRASH_AFTER, a config a schema accepts that still crashes it
//	crasher https   serves HTTPS on :8443 with /tls/tls.crt and /tls/tls.key, read again
//	                at every handshake (a renewed Secret is served once the kubelet
//	                has refreshed the volume)
//	crasher otlp    sends one span a second over OTLP/HTTP (JSON) to
//	                $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces (default http://localhost:4318)
//	                and logs each answer: the app beside an injected collector sidecar
package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// Cart is the checkout's cart; a nil *Cart is the bug.
type Cart struct {
	items []int
}

// Total sums the cart: called on a nil cart it panics with a nil pointer dereference.
func (c *Cart) Total() int {
	total := 0
	for _, item := range c.items {
		total += item
	}
	return total
}

func lookupCart(id int) *Cart {
	if id == 42 {
		return nil
	}
	return &Cart{items: []int{id}}
}

func after() time.Duration {
	if value := os.Getenv("CRASH_AFTER"); value != "" {
		if d, err := time.ParseDuration(value); err == nil {
			return d
		}
	}
	return 2 * time.Second
}

func main() {
	mode := "panic"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	fmt.Printf("checkout: starting (mode %s, pid %d)\n", mode, os.Getpid())
	fmt.Println("checkout: listening on :8080")
	switch mode {
	case "panic":
		time.Sleep(after())
		fmt.Println("checkout: order 42 received")
		fmt.Println(lookupCart(42).Total())
	case "oom":
		fmt.Println("checkout: loading the catalogue into memory")
		var hoard [][]byte
		for {
			chunk := make([]byte, 4<<20)
			for i := range chunk {
				chunk[i] = byte(i)
			}
			hoard = append(hoard, chunk)
			time.Sleep(10 * time.Millisecond)
		}
	case "exit0":
		time.Sleep(after())
		fmt.Println("checkout: batch done")
		os.Exit(0)
	case "config":
		path := os.Getenv("CONFIG")
		if path == "" {
			path = "/etc/checkout/app.yaml"
		}
		text, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "checkout: cannot read %s: %v\n", path, err)
			os.Exit(78)
		}
		settings := map[string]string{}
		for _, line := range strings.Split(string(text), "\n") {
			if key, value, ok := strings.Cut(line, ":"); ok {
				settings[strings.TrimSpace(key)] = strings.TrimSpace(value)
			}
		}
		fmt.Printf("checkout: config mode=%s port=%s\n", settings["mode"], settings["port"])
		if settings["mode"] == "fast" {
			time.Sleep(after())
			fmt.Println("checkout: fast mode skips the cart cache")
			fmt.Println(lookupCart(42).Total())
		}
		for i := 0; ; i++ {
			fmt.Printf("checkout: serving with mode=%s port=%s (%d)\n", settings["mode"], settings["port"], i)
			time.Sleep(time.Second)
		}
	case "https":
		server := &http.Server{
			Addr: ":8443",
			TLSConfig: &tls.Config{
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					pair, err := tls.LoadX509KeyPair("/tls/tls.crt", "/tls/tls.key")
					return &pair, err
				},
			},
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprintln(w, "checkout over TLS")
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		fmt.Println("checkout: serving HTTPS on :8443 with /tls")
		fmt.Fprintln(os.Stderr, server.ListenAndServeTLS("", ""))
		os.Exit(1)
	case "otlp":
		endpoint := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		if endpoint == "" {
			endpoint = "http://localhost:4318"
		}
		client := &http.Client{Timeout: 5 * time.Second}
		start := time.Now().UnixNano()
		for i := 1; ; i++ {
			begin := time.Now().UnixNano()
			span := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[`+
				`{"key":"service.name","value":{"stringValue":"checkout"}}]},`+
				`"scopeSpans":[{"spans":[{"traceId":"%016x%016x","spanId":"%016x",`+
				`"name":"GET /cart","kind":2,"startTimeUnixNano":"%d","endTimeUnixNano":"%d",`+
				`"status":{"code":2}}]}]}]}`,
				start, i, i, begin, begin+int64(time.Millisecond))
			response, err := client.Post(endpoint+"/v1/traces", "application/json", bytes.NewBufferString(span))
			if err != nil {
				fmt.Printf("checkout: span %d not exported: %v\n", i, err)
			} else {
				response.Body.Close()
				fmt.Printf("checkout: span %d exported: %s\n", i, response.Status)
			}
			time.Sleep(time.Second)
		}
	case "serve":
		for i := 0; ; i++ {
			fmt.Printf("checkout: healthy (%d)\n", i)
			time.Sleep(time.Second)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(64)
	}
}
