package notification

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"time"
)

// Mailer sends e-mail over SMTP to one relay (Mailpit, maildev, a test
// listener or a real MTA). It keeps the connections it opened and sends the
// next message over one of them after an RSET, as MTAs do: a new
// connection per message costs the greeting and EHLO every time, and the
// server more than the message itself (maildev spends about 60% less CPU
// per message on a kept connection; docs/benchmarks.md).
type Mailer struct {
	addr   string
	from   string
	dialer net.Dialer
	// idle holds the connections between messages, at most cap(idle).
	idle chan *smtpConn
}

// smtpConn is a kept connection and when it last finished a message.
type smtpConn struct {
	conn   net.Conn
	client *smtp.Client
	used   time.Time
}

// maxIdleConns bounds the kept connections (the e-mail worker's handlers
// rarely exceed it), and idleTimeout drops one before a server's own idle
// timeout would (maildev's and Postfix's are a minute or more).
const (
	maxIdleConns = 8
	idleTimeout  = 20 * time.Second
)

// NewMailer returns a Mailer that sends through the SMTP server at addr
// (host:port) with envelope and header sender from.
func NewMailer(addr, from string) *Mailer {
	return &Mailer{addr: addr, from: from, dialer: net.Dialer{Timeout: 5 * time.Second},
		idle: make(chan *smtpConn, maxIdleConns)}
}

// Send delivers em. It honours ctx throughout: the dial uses DialContext and
// the connection carries ctx's deadline, and a cancellation closes the
// connection at once (net/smtp itself knows nothing of contexts).
//
// A kept connection the server has closed meanwhile fails at MAIL FROM,
// before anything of the message was sent; the message then goes out over
// a new connection. Any other failure drops the connection. Once the server
// has answered the final dot of DATA with 2xx the message is its
// responsibility, so a failing RSET does not turn a delivered message into
// an error that would make the worker send it again.
func (m *Mailer) Send(ctx context.Context, em Email) error {
	if c := m.take(); c != nil {
		err := m.send(ctx, c, em)
		if !errors.Is(err, errStale) {
			return err
		}
	}
	c, err := m.dial(ctx)
	if err != nil {
		return err
	}
	return m.send(ctx, c, em)
}

// errStale is a kept connection failing at MAIL FROM.
var errStale = errors.New("smtp: kept connection is gone")

// take returns a kept connection that has not idled too long, or nil.
func (m *Mailer) take() *smtpConn {
	for {
		select {
		case c := <-m.idle:
			if time.Since(c.used) < idleTimeout {
				return c
			}
			c.conn.Close()
		default:
			return nil
		}
	}
}

// dial opens a connection and reads the server's greeting.
func (m *Mailer) dial(ctx context.Context) (*smtpConn, error) {
	conn, err := m.dialer.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return nil, fmt.Errorf("dial smtp %s: %w", m.addr, err)
	}
	stop, err := bindDeadline(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer stop()
	host, _, _ := net.SplitHostPort(m.addr)
	client, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("smtp greeting: %w", err)
	}
	return &smtpConn{conn: conn, client: client}, nil
}

// send delivers em over c and keeps c for the next message when the
// server accepted it and answered RSET; on an error c is closed.
func (m *Mailer) send(ctx context.Context, c *smtpConn, em Email) error {
	reused := !c.used.IsZero()
	stop, err := bindDeadline(ctx, c.conn)
	if err != nil {
		c.conn.Close()
		return err
	}
	defer stop()
	if err := c.client.Mail(m.from); err != nil {
		c.conn.Close()
		if reused {
			return errStale
		}
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := m.transfer(c.client, em); err != nil {
		c.conn.Close()
		return err
	}
	// The cancellation hook goes before the deadline is cleared, so it can
	// never land on a connection that is back in the pool.
	resetErr := c.client.Reset()
	stop()
	if resetErr != nil || c.conn.SetDeadline(time.Time{}) != nil {
		c.conn.Close() // delivered already; see the doc comment of Send
		return nil
	}
	c.used = time.Now()
	select {
	case m.idle <- c:
	default:
		c.quit()
	}
	return nil
}

// quit says QUIT, waiting a second at most, and closes the connection.
func (c *smtpConn) quit() {
	_ = c.conn.SetDeadline(time.Now().Add(time.Second))
	_ = c.client.Quit()
	c.conn.Close()
}

// transfer is RCPT TO and DATA for em, after MAIL FROM.
func (m *Mailer) transfer(c *smtp.Client, em Email) error {
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
	return nil
}

// bindDeadline gives conn ctx's deadline (a minute without one) and makes
// ctx's cancellation interrupt it at once; stop undoes the latter.
func bindDeadline(ctx context.Context, conn net.Conn) (stop func() bool, _ error) {
	// AfterFunc runs its function in a goroutine of its own, even for a
	// ctx that is done already: check first, or a kept connection could
	// send the whole message before the deadline lands.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("smtp deadline: %w", err)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) }), nil
}

// Close closes the kept connections.
func (m *Mailer) Close() {
	for {
		select {
		case c := <-m.idle:
			c.quit()
		default:
			return
		}
	}
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
