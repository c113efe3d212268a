package main

import "fmt"

// bundleLabels are the registry+v1 annotations, in metadata/annotations.yaml and as labels of
// the bundle image.
var bundleLabels = [][2]string{
	{"operators.operatorframework.io.bundle.mediatype.v1", "registry+v1"},
	{"operators.operatorframework.io.bundle.manifests.v1", "manifests/"},
	{"operators.operatorframework.io.bundle.metadata.v1", "metadata/"},
	{"operators.operatorframework.io.bundle.package.v1", packageName},
	{"operators.operatorframework.io.bundle.channels.v1", defaultChannel},
	{"operators.operatorframework.io.bundle.channel.default.v1", defaultChannel},
	{"operators.operatorframework.io.test.mediatype.v1", "scorecard+v1"},
	{"operators.operatorframework.io.test.config.v1", "tests/scorecard/"},
}

func annotationsYAML() []byte {
	out := "annotations:\n"
	for _, l := range bundleLabels {
		out += fmt.Sprintf("  %s: %s\n", l[0], l[1])
	}
	return []byte(out)
}

// dockerfile builds the bundle image from the bundle directory: docker build -f bundle.Dockerfile bundle/
func dockerfile() []byte {
	out := "# The OLM bundle image. Build from the bundle directory:\n#   docker build -f bundle/bundle.Dockerfile -t <registry>/ilpfleet-bundle:v<version> bundle/\nFROM scratch\n\n"
	for _, l := range bundleLabels {
		out += fmt.Sprintf("LABEL %s=%s\n", l[0], l[1])
	}
	out += "\nCOPY manifests /manifests/\nCOPY metadata /metadata/\nCOPY tests/scorecard /tests/scorecard/\n"
	return []byte(out)
}

// scorecardTests are operator-sdk's default scorecard suites: basic and OLM.
var scorecardTests = [][2]string{
	{"basic", "basic-check-spec"},
	{"olm", "olm-bundle-validation"},
	{"olm", "olm-crds-have-validation"},
	{"olm", "olm-crds-have-resources"},
	{"olm", "olm-spec-descriptors"},
	{"olm", "olm-status-descriptors"},
}

func scorecardYAML() []byte {
	out := "apiVersion: scorecard.operatorframework.io/v1alpha3\nkind: Configuration\nmetadata:\n  name: config\nstages:\n- parallel: true\n  tests:\n"
	for _, t := range scorecardTests {
		out += fmt.Sprintf("  - entrypoint:\n    - scorecard-test\n    - %s\n    image: %s\n    labels:\n      suite: %s\n      test: %s-test\n", t[1], scorecardImage, t[0], t[1])
	}
	out += "storage:\n  spec:\n    mountPath: {}\n"
	return []byte(out)
}
