package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestHandler_CountsAndForwards(t *testing.T) {
	var bodies []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	srv := httptest.NewServer(newHandler(u, &counts{n: map[string]int64{}}))
	defer srv.Close()
	call := func(target, body string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(body))
		if target != "" {
			req.Header.Set("X-Amz-Target", "AmazonSQS."+target)
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		} else {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	batch := `{"QueueUrl":"q","Entries":[{"Id":"1"},{"Id":"2"},{"Id":"3"}]}`
	call("SendMessageBatch", batch)
	call("ReceiveMessage", `{"QueueUrl":"q"}`)
	call("ReceiveMessage", `{"QueueUrl":"q"}`)
	call("", "Action=GetQueueUrl&QueueName=q")
	if len(bodies) != 4 || bodies[0] != batch {
		t.Fatalf("upstream got %q; want the 4 bodies unchanged", bodies)
	}
	resp, err := http.Get(srv.URL + "/_sqscount")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"SendMessageBatch": 1, "SendMessageBatch.entries": 3, "ReceiveMessage": 2, "GetQueueUrl": 1}
	if len(got) != len(want) {
		t.Errorf("counts = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counts[%s] = %d; want %d (all: %v)", k, got[k], v, got)
		}
	}
}
