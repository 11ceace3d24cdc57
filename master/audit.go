package master

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// The audit log (Config.AuditLog): one JSON object per line for every
// write a master answers and every call it refuses at authentication or
// authorization: who (principal, how it proved it, remote address), what
// (procedure and the ids the request names), when (the master's clock),
// and the result (a Connect code, "ok" on success). Reads are not
// recorded. Each line goes to the file in one write(2), so a crash loses
// at most the line being written; the file is fsynced when the master
// stops.

// auditEntry is one line of the audit log.
type auditEntry struct {
	Time      time.Time         `json:"time"`
	Master    string            `json:"master"`
	Principal string            `json:"principal"`
	Via       string            `json:"via,omitempty"`
	Remote    string            `json:"remote,omitempty"`
	Procedure string            `json:"procedure"`
	IDs       map[string]string `json:"ids,omitempty"`
	Result    string            `json:"result"`
	Error     string            `json:"error,omitempty"`
	Err       error             `json:"-"`
}

// auditLog appends entries to a file; a nil *auditLog records nothing.
type auditLog struct {
	master string
	now    func() time.Time
	mu     sync.Mutex
	f      *os.File
	failed bool
	log    func(msg string, args ...any)
}

func openAuditLog(path, master string, now func() time.Time, warn func(string, ...any)) (*auditLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("master: open audit log: %w", err)
	}
	return &auditLog{master: master, now: now, f: f, log: warn}, nil
}

func (a *auditLog) record(e auditEntry) {
	if a == nil {
		return
	}
	e.Time = a.now().UTC()
	e.Master = a.master
	e.Result = "ok"
	if e.Err != nil {
		e.Result = connect.CodeOf(e.Err).String()
		e.Error = e.Err.Error()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return
	}
	if _, err := a.f.Write(line); err != nil && !a.failed {
		a.failed = true // one warning, not one per call
		a.log("audit log write failed; entries are being lost", "err", err)
	}
}

func (a *auditLog) close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Sync()
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	a.f = nil
	if err != nil {
		return fmt.Errorf("master: close audit log: %w", err)
	}
	return nil
}

// auditedReads are the procedures the audit log leaves out.
func isRead(procedure string) bool {
	switch procedure {
	case agorav1connect.SchedulerServiceReconcileProcedure,
		agorav1connect.AgentServiceGetAssignmentsProcedure,
		agorav1connect.OperatorServiceGetStatusProcedure:
		return true
	}
	if strings.HasPrefix(procedure, "/"+agorav1connect.OperatorServiceName+"/") {
		return operatorNeed(procedure) == ""
	}
	method := procedure[strings.LastIndexByte(procedure, '/')+1:]
	return strings.HasPrefix(method, "List") || strings.HasPrefix(method, "Get")
}

// keyIDs collects the ids a request names: string fields called id,
// name or *_id (and repeated *_ids), in the message and the messages it
// holds (the first 8 of a repeated message field, keyed name[i]), two
// levels deep, at most 16.
func keyIDs(msg proto.Message) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, m protoreflect.Message, depth int)
	walk = func(prefix string, m protoreflect.Message, depth int) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if len(out) >= 16 {
				return false
			}
			name := string(fd.Name())
			key := prefix + name
			idLike := name == "id" || name == "name" || strings.HasSuffix(name, "_id") || strings.HasSuffix(name, "_ids")
			switch {
			case fd.Kind() == protoreflect.StringKind && fd.IsList() && idLike:
				l := v.List()
				parts := make([]string, 0, min(l.Len(), 8))
				for i := 0; i < l.Len() && i < 8; i++ {
					parts = append(parts, l.Get(i).String())
				}
				out[key] = strings.Join(parts, ",")
			case fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() && idLike:
				out[key] = v.String()
			case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && depth < 2:
				walk(key+".", v.Message(), depth+1)
			case fd.Kind() == protoreflect.MessageKind && fd.IsList() && depth < 2:
				l := v.List()
				for i := 0; i < l.Len() && i < 8 && len(out) < 16; i++ {
					walk(key+"["+strconv.Itoa(i)+"].", l.Get(i).Message(), depth+1)
				}
			}
			return true
		})
	}
	walk("", msg.ProtoReflect(), 0)
	return out
}

// auditInterceptor records every unary write a handler answers.
type auditInterceptor struct{ m *Master }

func (i auditInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		proc := req.Spec().Procedure
		if !isRead(proc) {
			msg, _ := req.Any().(proto.Message)
			i.m.sec.auditCall(ctx, proc, req.Peer().Addr, msg, err)
		}
		return res, err
	}
}

func (i auditInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i auditInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next // Subscribe records itself once the subscription is decided (auditSubscribe)
}

// auditCall records one write.
func (m *security) auditCall(ctx context.Context, procedure, remote string, msg proto.Message, err error) {
	if m.audit == nil {
		return
	}
	id, _ := auth.IdentityFrom(ctx)
	e := auditEntry{Principal: id.Principal, Via: id.Via, Remote: remote, Procedure: procedure, Err: err}
	if msg != nil {
		e.IDs = keyIDs(msg)
	}
	m.audit.record(e)
}
