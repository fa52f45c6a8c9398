package udpbatch

import "testing"

func TestWriteBigBatch(t *testing.T) {
	// Over rawMax bytes the batch goes through the runtime's syscall
	// entry; it must send the same.
	tx, _ := pair(t, "udp4", "127.0.0.1")
	ms := make([]Message, 20)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 60000)}
	}
	w := NewWriter(tx)
	if n, err := w.Write(ms); n != len(ms) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if !w.big {
		t.Fatalf("a %d-byte batch went raw", 20*60000)
	}
}
