// ESLint for the browser code served by this server: the public pages' player (pages/static)
// and the browser tests' page that drives it. scripts/test runs
// `eslint pages/static tests/browser/player_harness`; tsc checks the player's types
// (pages/static/tsconfig.json).
import js from "@eslint/js";
import globals from "globals";

const rules = {
  ...js.configs.recommended.rules,
  eqeqeq: ["error", "always"],
  "no-var": "error",
  "prefer-const": "error",
  "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
  "no-console": ["error", { allow: ["error", "warn"] }],
};

export default [
  {
    files: ["pages/static/**/*.js", "tests/browser/player_harness/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
    rules,
  },
  {
    files: ["tests/browser/player_harness/recorder.js"],
    languageOptions: { sourceType: "script", globals: { ...globals.audioWorklet } },
  },
];
