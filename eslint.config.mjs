// `npm run lint`: eslint with typescript-eslint's type-aware rules over lib/, test/, scripts/ and bench/.
// Formatting is prettier's alone (eslint-config-prettier turns off every rule it would fight).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'build/',
      'build-*/',
      'models/',
      'prebuilds/',
      'node_modules/',
      '.venv/',
      'gpu-check-out/',
      'gpu-smoke-out/',
      'test/types/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: { ...globals.node },
      parserOptions: {
        project: ['./tsconfig.check.json', './tsconfig.check-js.json', './tsconfig.bench.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // A caught error passed on as it is: its type is `unknown` by nature.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // The demo page's script: a classic browser script, outside every TypeScript project.
    files: ['lib/server/public/**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser }, parserOptions: { project: false } },
  },
  {
    // Typed by its hand-written torch-discovery.d.mts, which TypeScript reads in its place: no project holds the .mjs.
    files: ['scripts/torch-discovery.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { parserOptions: { project: false } },
  },
  {
    // Plain JavaScript has no types to check, so values typed `any` are normal there; and the tests
    // read JSON bodies and child-process output (`any` by nature) whose shape is what they assert.
    files: ['**/*.mjs', '**/*.js', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  prettier,
);
