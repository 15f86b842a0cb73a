// Swagger UI's files are imported as text by the Text rule in wrangler.toml (`GET /docs`).
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui.css" {
  const text: string;
  export default text;
}
