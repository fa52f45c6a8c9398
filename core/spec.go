package core

import (
	"fmt"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ParamType is the type of one stage parameter.
type ParamType string

const (
	TypeString     ParamType = "string"
	TypeInt        ParamType = "int"
	TypeFloat      ParamType = "float"
	TypeBool       ParamType = "bool"
	TypeDuration   ParamType = "duration"
	TypeStringList ParamType = "[]string"

	// Maps are TOML inline tables, {"live/cam1" = "public/lobby"}: string
	// keys, values of one scalar type, which min, max, enum and addr bound.
	TypeStringMap   ParamType = "map[string]string"
	TypeIntMap      ParamType = "map[string]int"
	TypeFloatMap    ParamType = "map[string]float"
	TypeBoolMap     ParamType = "map[string]bool"
	TypeDurationMap ParamType = "map[string]duration"
)

// mapPrefix starts every map type's name; the rest is its value type.
const mapPrefix = "map[string]"

// IsMap reports whether t is one of the map types.
func (t ParamType) IsMap() bool { return strings.HasPrefix(string(t), mapPrefix) }

// Valid reports whether t is a type Normalize handles.
func (t ParamType) Valid() bool {
	switch t {
	case TypeString, TypeInt, TypeFloat, TypeBool, TypeDuration, TypeStringList,
		TypeStringMap, TypeIntMap, TypeFloatMap, TypeBoolMap, TypeDurationMap:
		return true
	}
	return false
}

// Param describes one parameter of a stage: how it is typed, defaulted,
// bounded and documented. The same description parses pipeline files,
// validates them, lists stages and generates docs.
type Param struct {
	Name     string    `json:"name"`
	Type     ParamType `json:"type"`
	Doc      string    `json:"doc"`
	Default  string    `json:"default,omitempty"` // as it would be written in TOML, unquoted
	Required bool      `json:"required,omitempty"`
	Secret   bool      `json:"secret,omitempty"` // never logged or printed
	Min      *float64  `json:"min,omitempty"`    // numbers: value; durations: seconds
	Max      *float64  `json:"max,omitempty"`
	Enum     []string  `json:"enum,omitempty"`
	// Addr marks a network address (a list: each item) that must read
	// host:port with a numeric port 0-65535, so a typo is a problem at
	// load and validate time rather than a failure at run.
	Addr bool `json:"addr,omitempty"`
	// Live marks a parameter a running stage applies in place when a
	// reload changes it (the stage implements Reconfigurable); a change to
	// any other parameter restarts the stage's pipeline.
	Live bool `json:"live,omitempty"`
}

// Spec declares a stage: its name, what it does, what it takes and gives.
type Spec struct {
	Name    string  `json:"name"`
	Summary string  `json:"summary"`
	In      Kind    `json:"in"`
	Out     Kind    `json:"out"`
	Params  []Param `json:"params"`
	// Sample is a TOML fragment holding one [[pipeline.stage]] block that
	// uses the stage, for the docs to show; stages/all validates the built-ins'.
	Sample string `json:"sample,omitempty"`
	// Mutates says the stage writes into the bytes of packets it receives.
	// Where a stage's output feeds branches, packets are shared read-only;
	// a pipeline holding a stage that mutates gets its own copy instead.
	Mutates bool `json:"mutates,omitempty"`
	// NoIsolate, if set, says why the stage cannot run in a child process
	// (isolate = true): validate refuses it with this reason.
	NoIsolate string `json:"no_isolate,omitempty"`
}

// IsSource reports whether the stage has no input.
func (s *Spec) IsSource() bool { return s.In == KindNone }

// IsSink reports whether the stage has no output.
func (s *Spec) IsSink() bool { return s.Out == KindNone }

// Param returns the named parameter, or nil.
func (s *Spec) Param(name string) *Param {
	for i := range s.Params {
		if s.Params[i].Name == name {
			return &s.Params[i]
		}
	}
	return nil
}

// ParamsOf derives the parameter list from a config struct's tags:
//
//	Listen  string        `param:"listen" required:"true" doc:"address to listen on"`
//	Latency time.Duration `param:"latency" default:"80ms" min:"0.001" doc:"..."`
//	Mode    string        `param:"mode" default:"a" enum:"a,b" doc:"..."`
//	Key     string        `param:"publish_key" secret:"true" doc:"..."`
//	Listen  string        `param:"listen" addr:"true" doc:"..."`
//	Key     string        `param:"play_key" live:"true" doc:"..."` (applied by Reconfigure on reload)
//	Rename  map[string]string `param:"rename" doc:"..."`
//
// Field types map to string, int (any integer), float (float64), bool,
// duration (time.Duration), []string, and maps from string to any of the
// scalar types (map[string]int, map[string]time.Duration, ...), written as
// TOML inline tables. It panics on an unsupported field:
// that is a programming error found by the first test that registers it.
func ParamsOf(config any) []Param {
	t := reflect.TypeOf(config)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var params []Param
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("param")
		if name == "" || name == "-" {
			continue
		}
		p := Param{
			Name:     name,
			Type:     paramTypeOf(f.Type),
			Doc:      f.Tag.Get("doc"),
			Default:  f.Tag.Get("default"),
			Required: f.Tag.Get("required") == "true",
			Secret:   f.Tag.Get("secret") == "true",
			Addr:     f.Tag.Get("addr") == "true",
			Live:     f.Tag.Get("live") == "true",
		}
		if p.Type == "" {
			panic(fmt.Sprintf("core.ParamsOf: %s.%s: unsupported type %s", t.Name(), f.Name, f.Type))
		}
		if v := f.Tag.Get("min"); v != "" {
			x := mustFloat(v)
			p.Min = &x
		}
		if v := f.Tag.Get("max"); v != "" {
			x := mustFloat(v)
			p.Max = &x
		}
		if v := f.Tag.Get("enum"); v != "" {
			p.Enum = strings.Split(v, ",")
		}
		params = append(params, p)
	}
	return params
}

func mustFloat(s string) float64 {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(fmt.Sprintf("core.ParamsOf: bad bound %q", s))
	}
	return x
}

var durationType = reflect.TypeOf(time.Duration(0))

func paramTypeOf(t reflect.Type) ParamType {
	if t == durationType {
		return TypeDuration
	}
	switch t.Kind() {
	case reflect.String:
		return TypeString
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return TypeInt
	case reflect.Float32, reflect.Float64:
		return TypeFloat
	case reflect.Bool:
		return TypeBool
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return TypeStringList
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return ""
		}
		if e := paramTypeOf(t.Elem()); e != "" && e != TypeStringList && !e.IsMap() {
			return mapPrefix + e
		}
	}
	return ""
}

// EnvString marks a value that came from an environment variable: it is
// text, and is converted to the parameter's type rather than refused.
type EnvString string

// Normalize checks one raw value (as decoded from TOML, or an EnvString)
// against p and returns it in canonical Go form: string, int64, float64,
// bool, time.Duration, []string, or for a map type map[string]any holding
// those. The error reads well after "key: ".
func (p *Param) Normalize(raw any) (any, error) {
	if es, ok := raw.(EnvString); ok {
		return p.fromText(string(es))
	}
	if p.Type.IsMap() {
		return p.normalizeMap(raw)
	}
	var v any
	switch p.Type {
	case TypeString:
		s, ok := raw.(string)
		if !ok {
			return nil, p.typeErr(raw)
		}
		v = s
	case TypeInt:
		switch x := raw.(type) {
		case int64:
			v = x
		case int:
			v = int64(x)
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return nil, fmt.Errorf("%v is not a whole number", x)
			}
			v = int64(x)
		default:
			return nil, p.typeErr(raw)
		}
	case TypeFloat:
		switch x := raw.(type) {
		case float64:
			v = x
		case int64:
			v = float64(x)
		case int:
			v = float64(x)
		default:
			return nil, p.typeErr(raw)
		}
	case TypeBool:
		b, ok := raw.(bool)
		if !ok {
			return nil, p.typeErr(raw)
		}
		v = b
	case TypeDuration:
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a duration (write it as a string such as \"80ms\")", show(raw))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration", s)
		}
		v = d
	case TypeStringList:
		switch x := raw.(type) {
		case []any:
			list := make([]string, 0, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("item %d: %s is not a string", i+1, show(e))
				}
				list = append(list, s)
			}
			v = list
		case []string:
			v = slices.Clone(x)
		case string:
			// A single string where a list is expected is a common slip;
			// accept it as one item, and "" as none (retransmit = "" means
			// no repair, as it did while it took one address).
			v = []string{x}
			if x == "" {
				v = []string{}
			}
		default:
			return nil, p.typeErr(raw)
		}
	default:
		return nil, fmt.Errorf("unsupported parameter type %s", p.Type)
	}
	return v, p.check(v)
}

// elem is the parameter each value of a map parameter is checked against.
func (p *Param) elem() *Param {
	e := *p
	e.Type = ParamType(strings.TrimPrefix(string(p.Type), mapPrefix))
	return &e
}

func (p *Param) normalizeMap(raw any) (any, error) {
	t, ok := raw.(map[string]any)
	if !ok {
		return nil, p.typeErr(raw)
	}
	e := p.elem()
	out := make(map[string]any, len(t))
	for _, k := range sortedKeys(t) {
		v, err := e.Normalize(t[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tomlKey(k), err)
		}
		out[k] = v
	}
	return out, nil
}

// mapFromText reads an environment variable or default for a map
// parameter: "KEY=VALUE" pairs separated by commas.
func (p *Param) mapFromText(s string) (any, error) {
	e := p.elem()
	out := map[string]any{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		k, text, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE", item)
		}
		k = strings.TrimSpace(k)
		v, err := e.fromText(strings.TrimSpace(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tomlKey(k), err)
		}
		out[k] = v
	}
	return out, nil
}

func (p *Param) fromText(s string) (any, error) {
	if p.Type.IsMap() {
		return p.mapFromText(s)
	}
	var v any
	switch p.Type {
	case TypeString:
		v = s
	case TypeInt:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		v = n
	case TypeFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		v = f
	case TypeBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		v = b
	case TypeDuration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration", s)
		}
		v = d
	case TypeStringList:
		var list []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v = list
	default:
		return nil, fmt.Errorf("unsupported parameter type %s", p.Type)
	}
	return v, p.check(v)
}

func (p *Param) typeErr(raw any) error {
	want := map[ParamType]string{
		TypeString: "a string", TypeInt: "an integer", TypeFloat: "a number",
		TypeBool: "true or false", TypeStringList: "a list of strings",
	}[p.Type]
	if p.Type.IsMap() {
		want = fmt.Sprintf(`a table such as {"KEY" = %s}`, map[ParamType]string{
			TypeStringMap: `"VALUE"`, TypeIntMap: "1", TypeFloatMap: "1.5",
			TypeBoolMap: "true", TypeDurationMap: `"80ms"`,
		}[p.Type])
	}
	return fmt.Errorf("%s is not %s", p.show(raw), want)
}

func (p *Param) show(v any) string {
	if p.Secret {
		return "(secret)"
	}
	return show(v)
}

// show writes a value as TOML would, so an error quotes what the user
// wrote: "a", 1, ["a", "b"], {a = 1}. A duration reads as Go prints it.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case time.Duration:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []string:
		items := make([]string, len(x))
		for i, e := range x {
			items[i] = show(e)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case []any:
		items := make([]string, len(x))
		for i, e := range x {
			items[i] = show(e)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any:
		items := make([]string, 0, len(x))
		for _, k := range sortedKeys(x) {
			items = append(items, tomlKey(k)+" = "+show(x[k]))
		}
		return "{" + strings.Join(items, ", ") + "}"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%v", v)
}

// tomlKey writes k as a TOML key: bare when it can be, quoted otherwise.
func tomlKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return strconv.Quote(k)
		}
	}
	return k
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (p *Param) check(v any) error {
	var num float64
	isNum := true
	switch x := v.(type) {
	case int64:
		num = float64(x)
	case float64:
		num = x
	case time.Duration:
		num = x.Seconds()
	default:
		isNum = false
	}
	if isNum {
		if p.Min != nil && num < *p.Min {
			return fmt.Errorf("%s is below the minimum %s", p.show(v), p.bound(*p.Min))
		}
		if p.Max != nil && num > *p.Max {
			return fmt.Errorf("%s is above the maximum %s", p.show(v), p.bound(*p.Max))
		}
	}
	if s, ok := v.(string); ok && len(p.Enum) > 0 && !slices.Contains(p.Enum, s) {
		return fmt.Errorf("%s is not one of %s", p.show(s), strings.Join(p.Enum, ", "))
	}
	if p.Addr {
		switch x := v.(type) {
		case string:
			if x != "" { // empty means "none" where a param allows it
				return CheckAddr(x)
			}
		case []string:
			for i, a := range x {
				if err := CheckAddr(a); err != nil {
					return fmt.Errorf("item %d: %w", i+1, err)
				}
			}
		}
	}
	return nil
}

// CheckAddr says whether s reads host:port with a numeric port 0-65535
// (the host may be empty, an IP literal or a name; names are not looked up).
func CheckAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", s, err)
	}
	if strings.ContainsAny(host, " \t/") {
		return fmt.Errorf("%q is not host:port: bad host %q", s, host)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q is not host:port: port %q is not a number 0-65535", s, port)
	}
	return nil
}

func (p *Param) bound(x float64) string {
	if p.Type == TypeDuration {
		return time.Duration(x * float64(time.Second)).String()
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// RangeText is what p accepts beyond its type — its enum and bounds — as the
// stage list and the reference docs print it, or "" when anything goes.
func (p *Param) RangeText() string {
	var parts []string
	if len(p.Enum) > 0 {
		parts = append(parts, strings.Join(p.Enum, ", "))
	}
	if p.Addr {
		parts = append(parts, "host:port")
	}
	if p.Min != nil && p.Max != nil {
		parts = append(parts, fmt.Sprintf("%s – %s", p.bound(*p.Min), p.bound(*p.Max)))
	} else if p.Min != nil {
		parts = append(parts, "≥ "+p.bound(*p.Min))
	} else if p.Max != nil {
		parts = append(parts, "≤ "+p.bound(*p.Max))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ")
}

// Decode checks raw parameters against the spec and fills dst, a pointer to
// the stage's tagged config struct. Defaults apply to missing keys. It
// returns one error per problem, each starting with the key.
func (s *Spec) Decode(raw map[string]any, dst any) []error {
	var errs []error
	values := map[string]any{}
	for key, r := range raw {
		p := s.Param(key)
		if p == nil {
			errs = append(errs, fmt.Errorf("%s: unknown parameter%s", key, s.suggest(key)))
			continue
		}
		v, err := p.Normalize(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		values[key] = v
	}
	for i := range s.Params {
		p := &s.Params[i]
		if _, ok := values[p.Name]; ok {
			continue
		}
		if _, given := raw[p.Name]; given {
			continue // already reported
		}
		if p.Required {
			errs = append(errs, fmt.Errorf("%s: required parameter is missing", p.Name))
			continue
		}
		if p.Default != "" {
			v, err := p.fromText(p.Default)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: bad default: %w", p.Name, err))
				continue
			}
			values[p.Name] = v
		}
	}
	if len(errs) > 0 || dst == nil {
		return errs
	}
	if err := fill(dst, values); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func (s *Spec) suggest(key string) string {
	var names []string
	for _, p := range s.Params {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return fmt.Sprintf(" (%s takes none)", s.Name)
	}
	return fmt.Sprintf(" (%s takes %s)", s.Name, strings.Join(names, ", "))
}

// fill copies normalized values into the struct fields tagged with their names.
func fill(dst any, values map[string]any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config destination must be a pointer to a struct, not %T", dst)
	}
	rv = rv.Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		name := rt.Field(i).Tag.Get("param")
		v, ok := values[name]
		if !ok || name == "" {
			continue
		}
		if err := set(rv.Field(i), v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// set stores one normalized value in f.
func set(f reflect.Value, v any) error {
	switch x := v.(type) {
	case map[string]any:
		m := reflect.MakeMapWithSize(f.Type(), len(x))
		for k, e := range x {
			ev := reflect.New(f.Type().Elem()).Elem()
			if err := set(ev, e); err != nil {
				return fmt.Errorf("%s: %w", tomlKey(k), err)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(f.Type().Key()), ev)
		}
		f.Set(m)
	case string:
		f.SetString(x)
	case int64:
		if f.CanInt() {
			f.SetInt(x)
		} else {
			if x < 0 {
				return fmt.Errorf("%d must not be negative", x)
			}
			f.SetUint(uint64(x))
		}
	case float64:
		f.SetFloat(x)
	case bool:
		f.SetBool(x)
	case time.Duration:
		f.SetInt(int64(x))
	case []string:
		f.Set(reflect.ValueOf(x))
	}
	return nil
}
