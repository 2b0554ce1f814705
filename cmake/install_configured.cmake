# Install-time part of `cmake --install` / `make install` (CMakeLists.txt, install(CODE)):
# writes the files that name install paths — natkit.pc and the systemd units — for the
# prefix actually installed to (cmake --install --prefix P overrides the configured one),
# then installs them (file(INSTALL) adds $DESTDIR). Set by the caller: NK_SOURCE_DIR,
# NK_BINARY_DIR, NK_LIBDIR, NK_INCLUDEDIR, NK_BINDIR (relative, from GNUInstallDirs),
# NK_UNITDIR (relative to the prefix, or absolute), PROJECT_VERSION.
set(prefix "${CMAKE_INSTALL_PREFIX}")
# GNUInstallDirs' rule for the configuration directory: /usr -> /etc, /opt/X -> /etc/opt/X.
if(prefix STREQUAL "/usr" OR prefix STREQUAL "/")
  set(sysconfdir "/etc")
elseif(prefix MATCHES "^/opt/")
  set(sysconfdir "/etc${prefix}")
else()
  set(sysconfdir "${prefix}/etc")
endif()
set(out "${NK_BINARY_DIR}/install-files")
file(MAKE_DIRECTORY "${out}")

set(NK_PC_PREFIX "${prefix}")
set(NK_PC_LIBDIR "\${prefix}/${NK_LIBDIR}")
set(NK_PC_INCLUDEDIR "\${prefix}/${NK_INCLUDEDIR}")
configure_file("${NK_SOURCE_DIR}/natkit.pc.in" "${out}/natkit.pc" @ONLY)
file(INSTALL DESTINATION "${prefix}/${NK_LIBDIR}/pkgconfig" TYPE FILE FILES "${out}/natkit.pc")

set(NK_NATKIT "${prefix}/${NK_BINDIR}/natkit")
set(NK_CONFDIR "${sysconfdir}/natkit")
if(IS_ABSOLUTE "${NK_UNITDIR}")
  set(unitdir "${NK_UNITDIR}")
else()
  set(unitdir "${prefix}/${NK_UNITDIR}")
endif()
file(GLOB units "${NK_SOURCE_DIR}/dist/systemd/*.service.in")
foreach(in ${units})
  get_filename_component(name "${in}" NAME)
  string(REGEX REPLACE "\\.in$" "" name "${name}")
  configure_file("${in}" "${out}/${name}" @ONLY)
  file(INSTALL DESTINATION "${unitdir}" TYPE FILE FILES "${out}/${name}")
endforeach()
