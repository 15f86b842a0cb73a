// `*.sql` files are imported as text by wrangler's and the vitest plugin's built-in Text rule.
declare module "*.sql" {
  const text: string;
  export default text;
}
