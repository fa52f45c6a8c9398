package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
)

// TestPolicyErrorOneLine: a policy's error spanning lines (a wrapped stack
// trace, say) reaches mediapipe as its first line, at most maxErrorText
// bytes, cut on a character boundary.
func TestPolicyErrorOneLine(t *testing.T) {
	msg := "\n  model not loaded: " + strings.Repeat("é", 400) + "\ngoroutine 1 [running]:\nmain.main()"
	s := &policyServer{spec: core.Spec{Name: "p"}, p: PolicyFunc(func(context.Context, *control.Input) (control.Decision, error) {
		return control.Decision{}, errors.New(msg)
	})}
	_, err := s.Decide(context.Background(), &pluginpb.PolicyRequest{InputJson: []byte(`{}`)})
	st, _ := status.FromError(err)
	got := st.Message()
	if st.Code() != codes.Internal || strings.Contains(got, "\n") || !strings.HasPrefix(got, "model not loaded: éé") ||
		len(got) > maxErrorText+len("…") || !strings.HasSuffix(got, "é…") {
		t.Errorf("status %v %q", st.Code(), got)
	}
	if got := errorLine(errors.New("short")); got != "short" {
		t.Errorf("errorLine(short) = %q", got)
	}
}
