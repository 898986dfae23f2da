"use strict";
// /docs: Swagger UI on this server's /openapi.json; with a token set, it is asked for once
// and sent with every request the page makes, the document's own included.
(async () => {
  await modelfly.token();
  SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // Swagger UI would ask validator.swagger.io for a badge
    requestInterceptor: (request) => {
      const token = modelfly.storedToken();
      if (token) request.headers.Authorization = `Bearer ${token}`;
      return request;
    },
  });
})();
