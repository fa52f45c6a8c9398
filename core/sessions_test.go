package core

import (
	"slices"
	"testing"
)

func TestSessionsNotices(t *testing.T) {
	env := TestEnv("x")
	var got []string
	env.Events.Subscribe(func(n Notice) { got = append(got, n.Name+" "+n.Stream+" "+n.ID) })
	pub := &Session{Kind: Publisher, Stream: "live/a", Protocol: "rtmp", Client: "127.0.0.1:5"}
	rmPub := env.Sessions.Add(pub)
	view := &Session{Kind: Viewer, Stream: "live/a", Protocol: "http-flv"}
	rmView := env.Sessions.Add(view)
	if pub.ID == "" || view.ID == "" || pub.ID == view.ID {
		t.Fatalf("ids %q %q", pub.ID, view.ID)
	}
	if l := env.Sessions.List(Viewer, "live/a"); len(l) != 1 || l[0] != view {
		t.Fatalf("viewers %v", l)
	}
	if env.Sessions.Get(pub.ID) != pub {
		t.Fatal("Get")
	}
	rmView()
	rmView() // once only
	rmPub()
	want := []string{"publish live/a " + pub.ID, "play live/a " + view.ID, "stop live/a " + view.ID, "unpublish live/a " + pub.ID}
	if !slices.Equal(got, want) {
		t.Fatalf("notices\n got %q\nwant %q", got, want)
	}
	if len(env.Sessions.List("", "")) != 0 {
		t.Fatal("sessions left")
	}
	var nilReg *Sessions
	nilReg.Add(&Session{})() // a stage built by hand registers nothing
	(*Bus)(nil).Publish(Notice{})
}
