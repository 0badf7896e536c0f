// The group page's heatmap: a fragment of its own (up to 2,500 linked cells), fetched once
// the rest of the page is shown. Its HTML comes from this registry, escaped there.
document.querySelectorAll("[data-src]#heatmap-cells").forEach(async (box) => {
  const failed = (why) => {
    box.textContent = `The heatmap could not be loaded (${why}). `;
    const link = document.createElement("a");
    link.href = box.dataset.src;
    link.textContent = "Open it on its own";
    box.append(link);
  };
  try {
    const answer = await fetch(box.dataset.src, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!answer.ok) return failed(`HTTP ${answer.status}`);
    box.innerHTML = await answer.text();
    box.dataset.loaded = "true";
  } catch (error) {
    failed(error.message);
  }
});
