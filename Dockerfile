# One image for the operator and the connector runtime: `ilpfleet manager` / `ilpfleet connector`.
# Static binary, non-root, no shell in the final image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/ilpfleet/ilpfleet/internal/version.Version=${VERSION}" \
      -o /out/ilpfleet .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ilpfleet /ilpfleet
USER 65532:65532
ENTRYPOINT ["/ilpfleet"]
# Like the JS ilp-connector image, the image runs a connector unless told otherwise
# (`docker run -e CONNECTOR_… ilpfleet`); the operator names the command of every pod it makes.
CMD ["connector"]
