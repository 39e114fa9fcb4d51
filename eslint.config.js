// ESLint for the whole tree: ESLint's and typescript-eslint's recommended rules (not the type-checked
// set, so a run stays a few seconds). The import boundaries are dependency-cruiser's (.dependency-cruiser.js).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'test-results/', 'benchmarks/results/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // An unused binding named `_x` is deliberate (an argument an interface requires, a field left
      // out of a copy), and so is a rest sibling (`const { SecretID, ...rest } = t`).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // `let x: T | undefined;` before a closure that reads it, assigned once further down (the
      // closure must exist before the value does): not a const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Names, SNI and header values are checked for control characters on purpose.
      'no-control-regex': 'off',
      // The code gives a `let` its value where it is declared even when every path through the loop
      // or the try/catch below assigns it again before reading; that reads better than a bare `let`.
      'no-useless-assignment': 'off',
    },
  },
  {
    // Tests and benchmarks read JSON answers as `any` (the test asserts their shape); src does not.
    files: ['**/*.test.ts', 'test/**', 'benchmarks/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  // src/ui is loaded by the browser as is; scripts, bin and the configs run on Node.
  { files: ['src/ui/**/*.js'], languageOptions: { globals: globals.browser } },
  { files: ['**/*.mjs', 'bin/**/*.js', '*.js'], languageOptions: { globals: globals.node } },
);
