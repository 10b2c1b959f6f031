// Builds the dashboard into the Python package (src/syncline/dashboard/static), served
// under /dashboard/ by the API port. The output is reproducible: same sources and
// lockfile, same bytes (content-hashed names, no timestamps).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  base: "/dashboard/",
  plugins: [react()],
  build: {
    outDir: "../src/syncline/dashboard/static",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
    reportCompressedSize: true,
    chunkSizeWarningLimit: 600,
  },
});
