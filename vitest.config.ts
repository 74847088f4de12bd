import { defineConfig } from "vitest/config"

// One run over every package; `nx run-many -t test` runs the same tests package by package.
export default defineConfig({
  test: {
    projects: ["packages/*"],
    reporters: ["default", "./tools/vitest/summary-line.ts"]
  }
})
