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

func TestMailer_KeepsItsConnection(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := notification.NewMailer(srv.Addr(), "orders@orderflow.test")
	defer m.Close()
	for _, n := range []string{"1", "2", "3"} {
		mustSend(t, m, n)
	}
	if got := len(srv.Messages()); got != 3 {
		t.Fatalf("server accepted %d messages; want 3", got)
	}
	if got := srv.Accepted(); got != 1 {
		t.Errorf("3 messages took %d connections; want 1, kept between them", got)
	}
}

func TestMailer_ReconnectsWhenTheServerDroppedIt(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := notification.NewMailer(srv.Addr(), "orders@orderflow.test")
	defer m.Close()
	mustSend(t, m, "1")
	srv.DropConnections() // the server's idle timeout
	mustSend(t, m, "2")
	msgs := srv.Messages()
	if len(msgs) != 2 || msgs[1].Header().Get("Subject") != "Order 2" {
		t.Fatalf("server accepted %d messages (%v); want both, the second over a new connection", len(msgs), msgs)
	}
	if got := srv.Accepted(); got != 2 {
		t.Errorf("connections = %d; want 2", got)
	}
}

func TestMailer_DropsAConnectionThatFailed(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := notification.NewMailer(srv.Addr(), "orders@orderflow.test")
	defer m.Close()
	mustSend(t, m, "1")
	srv.FailData(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Send(ctx, testEmail("2")); err == nil {
		t.Fatal("Send with DATA refused = nil; want an error, so the worker redelivers")
	}
	srv.FailData(false)
	mustSend(t, m, "3")
	if got := len(srv.Messages()); got != 2 {
		t.Errorf("server accepted %d messages; want 2 (1 and 3)", got)
	}
	if got := srv.Accepted(); got != 2 {
		t.Errorf("connections = %d; want 2: the one whose DATA failed is not reused", got)
	}
}

func TestMailer_HonoursCancellation(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := notification.NewMailer(srv.Addr(), "orders@orderflow.test")
	defer m.Close()
	mustSend(t, m, "1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Send(ctx, testEmail("2")); err == nil {
		t.Error("Send with a cancelled context = nil; want an error")
	}
	mustSend(t, m, "3")
}
