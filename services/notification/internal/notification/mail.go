package notification

import (
	"context"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"time"
)

// Mailer sends e-mail over SMTP to one relay (Mailpit, maildev, a test
// listener or a real MTA), one connection per message.
type Mailer struct {
	addr   string
	from   string
	dialer net.Dialer
}

// NewMailer returns a Mailer that sends through the SMTP server at addr
// (host:port) with envelope and header sender from.
func NewMailer(addr, from string) *Mailer {
	return &Mailer{addr: addr, from: from, dialer: net.Dialer{Timeout: 5 * time.Second}}
}

// Send delivers em. It honours ctx throughout: the dial uses DialContext and
// the connection carries ctx's deadline, and a cancellation closes the
// connection at once (net/smtp itself knows nothing of contexts). Once the
// server has answered the final dot of DATA with 2xx the message is its
// responsibility, so a failing QUIT does not turn a delivered message into
// an error that would make the worker send it again.
func (m *Mailer) Send(ctx context.Context, em Email) error {
	conn, err := m.dialer.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("dial smtp %s: %w", m.addr, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return fmt.Errorf("smtp deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	host, _, _ := net.SplitHostPort(m.addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if err := c.Mail(m.from); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(em.To); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(m.message(em)); err != nil {
		return fmt.Errorf("smtp write message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp end of DATA: %w", err)
	}
	_ = c.Quit() // accepted already; see the doc comment
	return nil
}

// MessageID derives the Message-ID header from the event id: a duplicate
// sent after a crash (see Service.HandleEmail) carries the same id, so a
// receiver that deduplicates on Message-ID drops it.
func MessageID(eventID string) string {
	return "<" + eventID + "@notification.orderflow>"
}

func (m *Mailer) message(em Email) []byte {
	var b strings.Builder
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", m.from)
	header("To", em.To)
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(em.Subject)))
	header("Date", time.Now().UTC().Format(time.RFC1123Z))
	header("Message-ID", MessageID(em.EventID))
	header("X-Orderflow-Kind", em.Kind)
	header("X-Orderflow-Order-ID", em.OrderID)
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	b.WriteString(em.Body)
	return []byte(b.String())
}
