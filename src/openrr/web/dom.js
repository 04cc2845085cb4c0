// The page's elements (index.html), by id: the one lookup every module of the viewer shares.

export const $ = (id) => document.getElementById(id);
