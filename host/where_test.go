package host

import (
	"fmt"
	"testing"
)

func TestServedAt(t *testing.T) {
	got := servedAt([]string{"0.0.0.0:8080", "[::]:8081", ":8082", "127.0.0.5:8083"}, "198.18.0.2:7400")
	if fmt.Sprint(got) != "[198.18.0.2:8080 198.18.0.2:8081 198.18.0.2:8082 127.0.0.5:8083]" {
		t.Fatalf("served at %v", got)
	}
	if got := servedAt([]string{"0.0.0.0:8080"}, ""); fmt.Sprint(got) != "[0.0.0.0:8080]" {
		t.Fatalf("with no host address: %v", got)
	}
}
