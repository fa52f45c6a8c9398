// Package sr defines the super-resolution backend contract that sr-enhancer
// calls, whether the backend is built in, an HTTP service or a plugin.
package sr

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// Image is a packed 8-bit, 3-channel picture, rows top to bottom, no padding.
type Image struct {
	Width, Height int
	// Format is "rgb24" or "bgr24": the channel order of Pix.
	Format string
	Pix    []byte // Width*Height*3 bytes
}

// Validate checks that Pix holds exactly Width×Height×3 bytes.
func (im *Image) Validate() error {
	if im.Width <= 0 || im.Height <= 0 {
		return fmt.Errorf("sr: image size %dx%d", im.Width, im.Height)
	}
	if len(im.Pix) != im.Width*im.Height*3 {
		return fmt.Errorf("%w: %dx%d needs %d bytes, got %d", ErrBadImage, im.Width, im.Height, im.Width*im.Height*3, len(im.Pix))
	}
	return nil
}

// ErrBadImage is returned for an image whose size and pixels disagree.
var ErrBadImage = errors.New("sr: image size and pixel count disagree")

// Backend super-resolves one picture. The input is RGB24; the result is
// scale×Width by scale×Height, in either channel order (Format says which).
// Implementations must honour ctx's deadline; the caller treats an error or a
// wrongly sized result as a failure and upscales conventionally instead.
type Backend interface {
	Enhance(ctx context.Context, in *Image, scale int) (*Image, error)
	Close() error
}

// PluginOpener starts an SR backend plugin at path. The plugin bridge
// installs one with SetPluginOpener; core does not depend on it.
type PluginOpener func(path string) (Backend, error)

var pluginOpener atomic.Pointer[PluginOpener]

// SetPluginOpener installs the opener used for backend = "plugin".
func SetPluginOpener(f PluginOpener) { pluginOpener.Store(&f) }

// ErrNoPlugins is returned by OpenPlugin when no bridge is linked in.
var ErrNoPlugins = errors.New("sr: plugin backends are not available in this build")

// OpenPlugin starts the SR backend plugin at path through the installed opener.
func OpenPlugin(path string) (Backend, error) {
	f := pluginOpener.Load()
	if f == nil {
		return nil, ErrNoPlugins
	}
	return (*f)(path)
}
