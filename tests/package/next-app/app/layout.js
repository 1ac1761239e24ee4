// Built by Next.js in tests/package (with Turbopack, its default, and with webpack).
export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
