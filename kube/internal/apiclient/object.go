package apiclient

// Accessors of an Object's common fields; each "" (or nil) when absent
// or of another type.

func metadata(obj Object) map[string]any { m, _ := obj["metadata"].(map[string]any); return m }

// Name is metadata.name.
func Name(obj Object) string { s, _ := metadata(obj)["name"].(string); return s }

// Namespace is metadata.namespace.
func Namespace(obj Object) string { s, _ := metadata(obj)["namespace"].(string); return s }

// UID is metadata.uid.
func UID(obj Object) string { s, _ := metadata(obj)["uid"].(string); return s }

// ResourceVersion is metadata.resourceVersion.
func ResourceVersion(obj Object) string { s, _ := metadata(obj)["resourceVersion"].(string); return s }

// StringMap is the string map at metadata.field (labels, annotations);
// values not strings are left out.
func StringMap(obj Object, field string) map[string]string {
	m, _ := metadata(obj)[field].(map[string]any)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// Nested is the value at obj's path of fields, nil if there is none.
func Nested(obj Object, path ...string) any {
	var v any = obj
	for _, f := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[f]
	}
	return v
}
