import { defineConfig } from 'vite';

// The Go binary embeds dist/ and serves it at /console/ (web/embed.go).
export default defineConfig({
  base: '/console/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2020',
    chunkSizeWarningLimit: 600,
  },
});
