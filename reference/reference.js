// Redoc (vendored beside this file) renders the service's own document; served in Development only.
Redoc.init("/openapi/v1.json", { expandResponses: "200,201", jsonSampleExpandLevel: 3 }, document.getElementById("reference"));
