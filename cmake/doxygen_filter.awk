# Doxygen input filter: iopt's headers document with plain // comments, as
# the rest of the code does; this turns the ones that document something
# into Doxygen comments, so the headers read as the API reference without a
# second comment style in the source.
#
#   - The comment block that opens a file becomes the file's description.
#   - A comment block outside every function body documents the declaration
#     after it. Inside function bodies comments stay plain.
#   - Section rulers (// ---- name ----) stay plain.
function flush_block(    i, line, doc) {
  doc = depth_fn == 0
  for (i = 1; i <= n; i++) {
    line = block[i]
    if (doc && line !~ /^[ \t]*\/\/ ?-+/)
      sub(/\/\/ ?/, "/// ", line)
    print line
  }
  n = 0
}
BEGIN { n = 0; depth = 0; depth_fn = 0; started = 0 }
{
  if ($0 ~ /^[ \t]*\/\//) {
    if (!started) {
      started = 1
      print "/// \\file"
    }
    block[++n] = $0
    next
  }
  started = 1
  if (n > 0)
    flush_block()
  print
  # Follow the braces. A "{" on a line with a ")" before it (a function,
  # a lambda, a requires expression) or alone on its line opens a body;
  # namespace, class, struct and enum braces do not.
  line = $0
  gsub(/"([^"\\]|\\.)*"/, "", line)
  gsub(/'([^'\\]|\\.)*'/, "", line)
  sub(/\/\/.*/, "", line)
  opens = gsub(/{/, "{", line)
  closes = gsub(/}/, "}", line)
  for (k = 0; k < opens; k++) {
    depth++
    body[depth] = depth_fn > 0 || line ~ /\)[^{]*{/ || line ~ /^[ \t]*{/
    if (body[depth])
      depth_fn++
  }
  for (k = 0; k < closes; k++)
    if (depth > 0) {
      if (body[depth])
        depth_fn--
      depth--
    }
}
END { if (n > 0) flush_block() }
