package notification_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

func testEmail(n string) notification.Email {
	return notification.Email{To: "a@example.com", Subject: "Order " + n, Kind: "order_confirmed",
		OrderID: "order-" + n, EventID: "event-" + n, Body: "body " + n + "\r\n"}
}

func mustSend(t *testing.T, m *notification.Mailer, n string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Send(ctx, testEmail(n)); err != nil {
		t.Fatalf("Send(%s) = %v; want nil", n, err)
	}
}

// startMailer is a Mailer sending to a test SMTP server.
func startMailer(t *testing.T) (*smtptest.Server, *notification.Mailer) {
	t.Helper()
	srv := smtptest.Start(t)
	m := notification.NewMailer(srv.Addr(), "orders@orderflow.test")
	t.Cleanup(m.Close)
	return srv, m
}

// checkServer fails unless srv accepted messages messages over conns
// connections.
func checkServer(t *testing.T, srv *smtptest.Server, messages, conns int, why string) {
	t.Helper()
	if got := len(srv.Messages()); got != messages {
		t.Errorf("server accepted %d messages; want %d", got, messages)
	}
	if got := srv.Accepted(); got != conns {
		t.Errorf("connections = %d; want %d: %s", got, conns, why)
	}
}

func TestMailer_KeepsItsConnection(t *testing.T) {
	t.Parallel()
	srv, m := startMailer(t)
	for _, n := range []string{"1", "2", "3"} {
		mustSend(t, m, n)
	}
	checkServer(t, srv, 3, 1, "the connection is kept between messages")
}

func TestMailer_ReconnectsWhenTheServerDroppedIt(t *testing.T) {
	t.Parallel()
	srv, m := startMailer(t)
	mustSend(t, m, "1")
	srv.DropConnections() // the server's idle timeout
	mustSend(t, m, "2")
	checkServer(t, srv, 2, 2, "the second message goes over a new connection")
	if msgs := srv.Messages(); len(msgs) == 2 && msgs[1].Header().Get("Subject") != "Order 2" {
		t.Errorf("second message's subject = %q; want %q", msgs[1].Header().Get("Subject"), "Order 2")
	}
}

func TestMailer_DropsAConnectionThatFailed(t *testing.T) {
	t.Parallel()
	srv, m := startMailer(t)
	mustSend(t, m, "1")
	srv.FailData(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Send(ctx, testEmail("2")); err == nil {
		t.Fatal("Send with DATA refused = nil; want an error, so the worker redelivers")
	}
	srv.FailData(false)
	mustSend(t, m, "3")
	checkServer(t, srv, 2, 2, "the one whose DATA failed is not reused")
}

func TestMailer_HonoursCancellation(t *testing.T) {
	t.Parallel()
	_, m := startMailer(t)
	mustSend(t, m, "1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Send(ctx, testEmail("2")); err == nil {
		t.Error("Send with a cancelled context = nil; want an error")
	}
	mustSend(t, m, "3")
}
