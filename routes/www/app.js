// A minimal client-side router: links marked data-route switch views without a
// page load. A reload on /hosts still works because the apex location sets
// `spa: true`, so edgeway answers unknown paths with index.html.

const views = { '/': 'home', '/hosts': 'hosts' };

function show(path) {
  const id = views[path] ?? 'home';
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== id;
  for (const link of document.querySelectorAll('a[data-route]')) {
    if (link.getAttribute('href') === path) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

document.addEventListener('click', (event) => {
  const link = event.target instanceof Element ? event.target.closest('a[data-route]') : null;
  if (link === null || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  const path = link.getAttribute('href');
  if (path !== location.pathname) history.pushState(null, '', path);
  show(path);
});

window.addEventListener('popstate', () => show(location.pathname));

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('where').textContent = location.host;
  show(location.pathname);
});
