package interop

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
)

// ecbMirror serves, on 127.0.0.1, an ECB daily rates file (the shape of eurofxref-daily.xml)
// with 1 EUR = usdPerEUR USD. It stands in for the ECB's site, which these tests cannot reach:
// both connectors' ecb backends fetch it (JS ratesApiUrl, which ilpfleet also accepts), so a
// payment converts between USD and EUR on each side with the backend a JS user runs.
var ecbMirror = sync.OnceValue(func() string {
	file := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<gesmes:subject>Reference rates</gesmes:subject>
	<Cube>
		<Cube time='2026-12-04'>
			<Cube currency='USD' rate='%s'/>
			<Cube currency='JPY' rate='162.5'/>
		</Cube>
	</Cube>
</gesmes:Envelope>
`, usdPerEUR)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, file)
	}))
	return srv.URL + "/stats/eurofxref/eurofxref-daily.xml" // lives as long as the test binary
})

// ecbBackend is the backend environment of a connector on the ECB mirror, for either
// implementation.
func ecbBackend(vars map[string]string) {
	vars["CONNECTOR_BACKEND"] = "ecb"
	vars["CONNECTOR_BACKEND_CONFIG"] = fmt.Sprintf(`{"ratesApiUrl":%q}`, ecbMirror())
}
