// Package config fills a binary's configuration struct from the environment, once, at
// start-up. Each field names its variable and default in struct tags:
//
//	type Config struct {
//		DatabaseURL string        `env:"DATABASE_URL" default:"postgresql://…"`
//		CacheTTL    time.Duration `env:"CACHE_TTL" default:"300s"`
//	}
//
// Durations accept Go syntax ("250ms", "5m") or a bare integer, read as seconds, so the
// original project's settings (CACHE_TTL=300) keep working. Booleans accept
// true/false/1/0/yes/no/on/off like the original's pydantic settings. Lists are
// comma-separated. Nested structs are walked, so layers can share blocks of settings; a
// layer whose defaults differ from the block's says so on the field that holds it:
//
//	Pool pgstore.PoolConfig `defaults:"DB_POOL_MAX_SIZE=20"` // NAME=value, comma-separated
//
// A []string field whose name holds {n} is a numbered sequence, read from its first number
// (the "from" tag, default 0) up to the first variable that is unset or empty:
//
//	MoreShards []string `env:"SHARD_{n}_URL" from:"3"` // SHARD_3_URL, SHARD_4_URL …
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Load fills the struct that dst points to from the environment and the default tags.
func Load(dst any) error { return LoadFrom(dst, os.LookupEnv) }

// LoadFrom is Load with the variables looked up by lookup instead of in the environment;
// Defaults is a lookup that finds none, so that LoadFrom(dst, Defaults) gives the defaults
// alone, whatever the environment holds (tests use it).
func LoadFrom(dst any, lookup func(name string) (string, bool)) error {
	return load(reflectValue(dst), lookup, nil)
}

// Defaults finds no variable: with LoadFrom, every field takes its default.
func Defaults(string) (string, bool) { return "", false }

func reflectValue(dst any) reflect.Value { return reflect.ValueOf(dst).Elem() }

// load fills v; defaults, when set, replace the default tags of the variables they name
// (an enclosing struct's `defaults` tag).
func load(v reflect.Value, lookup func(string) (string, bool), defaults map[string]string) error {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				if err := load(fv, lookup, withDefaults(defaults, f.Tag.Get("defaults"))); err != nil {
					return err
				}
			}
			continue
		}
		if strings.Contains(name, "{n}") {
			if err := setSequence(fv, f.Tag, lookup); err != nil {
				return err
			}
			continue
		}
		raw, ok := lookup(name)
		if !ok || raw == "" {
			if raw, ok = defaults[name]; !ok {
				raw, ok = f.Tag.Lookup("default")
			}
		}
		if !ok {
			continue
		}
		if err := set(fv, raw); err != nil {
			return fmt.Errorf("config %s=%q: %w", name, raw, err)
		}
	}
	return nil
}

// withDefaults adds a `defaults` tag's NAME=value pairs to outer's; outer's win, being set
// by the struct further out.
func withDefaults(outer map[string]string, tag string) map[string]string {
	if tag == "" {
		return outer
	}
	m := map[string]string{}
	for _, pair := range strings.Split(tag, ",") {
		if name, value, ok := strings.Cut(strings.TrimSpace(pair), "="); ok {
			m[name] = value
		}
	}
	for name, value := range outer {
		m[name] = value
	}
	return m
}

// setSequence fills a []string field from the numbered variables its env tag names.
func setSequence(v reflect.Value, tag reflect.StructTag, lookup func(string) (string, bool)) error {
	name := tag.Get("env")
	if v.Type() != reflect.TypeFor[[]string]() {
		return fmt.Errorf("config %s: a numbered sequence must be a []string", name)
	}
	n := 0
	if from, ok := tag.Lookup("from"); ok {
		var err error
		if n, err = strconv.Atoi(from); err != nil {
			return fmt.Errorf("config %s: from:%q is not an integer", name, from)
		}
	}
	var items []string
	for ; ; n++ {
		raw, _ := lookup(sequenceName(name, n))
		if raw = strings.TrimSpace(raw); raw == "" {
			break
		}
		items = append(items, raw)
	}
	v.Set(reflect.ValueOf(items))
	return nil
}

// sequenceName is the variable of a numbered sequence's n-th item: sequenceName("SHARD_{n}_URL", 3)
// is SHARD_3_URL.
func sequenceName(pattern string, n int) string {
	return strings.ReplaceAll(pattern, "{n}", strconv.Itoa(n))
}

func set(v reflect.Value, raw string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case []string:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		v.SetFloat(f)
	case reflect.Bool:
		b, err := parseBool(raw)
		if err != nil {
			return err
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("unsupported field type %s", v.Type())
	}
	return nil
}

// ParseDuration reads Go duration syntax, or a bare number as seconds.
func ParseDuration(raw string) (time.Duration, error) {
	raw = strings.TrimSpace(raw)
	if secs, err := strconv.ParseFloat(raw, 64); err == nil {
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, fmt.Errorf("not a duration (use seconds or e.g. 250ms)")
	}
	return d, nil
}

func parseBool(raw string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "1", "true", "yes", "on", "t", "y":
		return true, nil
	case "0", "false", "no", "off", "f", "n":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// LogValue returns the settings of a loaded config as slog attributes, for the one start-up
// log line. Fields tagged secret:"true" are masked, and so are passwords inside URLs.
func LogValue(cfg any) slog.Value {
	var attrs []slog.Attr
	collect(reflect.ValueOf(cfg), &attrs)
	return slog.GroupValue(attrs...)
}

func collect(v reflect.Value, attrs *[]slog.Attr) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			if f.Type.Kind() == reflect.Struct {
				collect(fv, attrs)
			}
			continue
		}
		var val any = fv.Interface()
		switch {
		case f.Tag.Get("secret") == "true":
			val = "***"
		case fv.Kind() == reflect.String:
			val = MaskURL(fv.String())
		case fv.Type() == reflect.TypeFor[[]string]():
			items := make([]string, 0, fv.Len())
			for _, s := range fv.Interface().([]string) {
				items = append(items, MaskURL(s))
			}
			val = items
		}
		*attrs = append(*attrs, slog.Any(name, val))
	}
}

// MaskURL hides the password of a URL-looking string; anything else is returned as is.
func MaskURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
