"""The embedded deployment: broker and services as local processes (`feedrank up`, the demo, e2e tests)."""
