export function NotFound({ what = 'page' }: { what?: string }) {
  return (
    <section class="empty" aria-labelledby="nf">
      <h1 id="nf">This {what} does not exist</h1>
      <p>
        <a href="/">Back to the home page</a>
      </p>
    </section>
  );
}
