// Package smtptest runs a real SMTP server inside a test process, so code
// that sends e-mail is tested over the actual protocol (EHLO/HELO, MAIL FROM,
// RCPT TO, DATA, RSET, NOOP, QUIT) on 127.0.0.1 instead of against a mock.
// It records every message it accepts and can be told to reject DATA or to
// go away entirely, to test how a sender copes with a mail server that fails.
package smtptest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one e-mail the server accepted.
type Message struct {
	From string
	To   []string
	// Data is the message as sent after DATA (headers and body, CRLF line
	// endings, dot-stuffing removed).
	Data []byte
}

// Header parses the message's header; a malformed message gives an empty one.
func (m Message) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return mail.Header{}
	}
	return msg.Header
}

// Body returns the message body after the header.
func (m Message) Body() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(msg.Body)
	return string(b)
}

// Server is an SMTP server listening on 127.0.0.1 with a random port.
type Server struct {
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	msgs     []Message
	failing  bool
	rejected int
	closed   bool
	conns    map[net.Conn]struct{}
	discard  bool // a sink: accept every message, keep none
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// NewSink starts a server outside a test that accepts every message and
// keeps none, for load programs whose services need an SMTP peer but whose
// measurement does not need the mail. Close it when done.
func NewSink() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtptest: listen: %w", err)
	}
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}, discard: true}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the host:port to send mail to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Messages returns a copy of the messages accepted so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// FailData makes the server answer DATA with "451 local error" while fail is
// true: a temporary failure, so the sender keeps the message and retries.
func (s *Server) FailData(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = fail
}

// Rejected counts the DATA commands refused because of FailData.
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Close stops listening and drops every open connection; later dials are
// refused. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.session(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// session speaks SMTP on one connection until QUIT or an I/O error. A
// generous deadline keeps a stuck client from holding the goroutine forever.
func (s *Server) session(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	tp := textproto.NewConn(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			if err := tp.PrintfLine("%s", l); err != nil {
				return false
			}
		}
		return true
	}
	if !reply("220 smtptest ESMTP ready") {
		return
	}
	var (
		greeted bool
		from    string
		inMail  bool
		rcpts   []string
	)
	reset := func() { from, inMail, rcpts = "", false, nil }
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			greeted = true
			reset()
			if !reply("250-smtptest greets "+arg, "250-8BITMIME", "250 SMTPUTF8") {
				return
			}
		case "HELO":
			greeted = true
			reset()
			if !reply("250 smtptest greets " + arg) {
				return
			}
		case "MAIL":
			addr, ok := pathArg(arg, "FROM:")
			switch {
			case !greeted:
				ok = reply("503 5.5.1 say EHLO or HELO first")
			case inMail:
				ok = reply("503 5.5.1 nested MAIL command")
			case !ok:
				ok = reply("501 5.5.4 syntax: MAIL FROM:<address>")
			default:
				from, inMail = addr, true
				ok = reply("250 2.1.0 ok")
			}
			if !ok {
				return
			}
		case "RCPT":
			addr, ok := pathArg(arg, "TO:")
			switch {
			case !inMail:
				ok = reply("503 5.5.1 need MAIL before RCPT")
			case !ok || addr == "":
				ok = reply("501 5.5.4 syntax: RCPT TO:<address>")
			default:
				rcpts = append(rcpts, addr)
				ok = reply("250 2.1.5 ok")
			}
			if !ok {
				return
			}
		case "DATA":
			if len(rcpts) == 0 {
				if !reply("503 5.5.1 need RCPT before DATA") {
					return
				}
				continue
			}
			s.mu.Lock()
			failing := s.failing
			if failing {
				s.rejected++
			}
			s.mu.Unlock()
			if failing {
				reset()
				if !reply("451 4.3.0 local error in processing") {
					return
				}
				continue
			}
			if !reply("354 end data with <CR><LF>.<CR><LF>") {
				return
			}
			data, err := io.ReadAll(tp.DotReader())
			if err != nil {
				return
			}
			msg := Message{From: from, To: rcpts, Data: bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))}
			s.mu.Lock()
			if !s.discard {
				s.msgs = append(s.msgs, msg)
			}
			s.mu.Unlock()
			reset()
			if !reply("250 2.0.0 ok: queued") {
				return
			}
		case "RSET":
			reset()
			if !reply("250 2.0.0 ok") {
				return
			}
		case "NOOP":
			if !reply("250 2.0.0 ok") {
				return
			}
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			if !reply("502 5.5.2 command not implemented") {
				return
			}
		}
	}
}

// pathArg parses "FROM:<a@b> PARAMS" (or TO:) and returns the address inside
// the angle brackets; MAIL FROM:<> (the null sender) is valid.
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}
