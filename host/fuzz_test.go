package host_test

import (
	"testing"

	"github.com/mediapipe/mediapipe/host"
)

// FuzzConfig feeds arbitrary bytes to the pipeline-file parser: it must
// answer with problems or a file, never panic.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = 5\n"))
	f.Add([]byte("[admin]\nlisten = [1, 2]\n[[pipeline]]\nstage = 3\n"))
	f.Add([]byte("pipeline = \"x\"\n"))
	f.Add([]byte("[[pipeline]]\n[[pipeline.stage]]\nuse = \"av2flv\"\nmax_payload = 1e99\nratio = -1\ndestinations = [1, \"a\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		reg := testRegistry(t)
		file, err := host.Load("fuzz.toml", ".", data, nil, reg)
		if err == nil {
			file.Close()
			return
		}
		if err.Error() == "" {
			t.Fatal("problem with no text")
		}
	})
}
