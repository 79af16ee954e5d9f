import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "out/", "node_modules/", "e2e/node_modules/", "e2e/.work/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The e2e driver is plain Node.js (ES modules).
    files: ["e2e/**/*.mjs"],
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        fetch: "readonly",
        setTimeout: "readonly",
        document: "readonly",
      },
    },
  },
  {
    rules: {
      eqeqeq: "error",
      curly: "error",
      "@typescript-eslint/no-floating-promises": "off",
    },
  },
);
