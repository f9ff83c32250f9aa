"""Packaging for flatness_nb: metadata comes from settings.ini (nbdev 2 layout); no pkg_resources."""
from configparser import ConfigParser
import setuptools, shlex

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
c = cfg['DEFAULT']
licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
lic = licenses[c['license']]
reqs = shlex.split(c.get('requirements', ''))
dev_reqs = shlex.split(c.get('dev_requirements', ''))
bench_reqs = shlex.split(c.get('bench_requirements', ''))  # the peers of the benchmark (optional)
scripts = [s.strip() for s in c.get('console_scripts', '').split('\n') if s.strip()]
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
min_python = c['min_python']

setuptools.setup(
    name=c['lib_name'], version=c['version'], description=c['description'],
    author=c['author'], author_email=c['author_email'], license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(c['status'])], 'Intended Audience :: ' + c['audience'],
                 'License :: ' + lic[1], 'Natural Language :: ' + c['language']] +
                ['Programming Language :: Python :: ' + v for v in py_versions[py_versions.index(min_python):]],
    url=c['git_url'], packages=setuptools.find_packages(include=['flatness_nb', 'flatness_nb.*']),
    include_package_data=True, install_requires=reqs, extras_require={'dev': dev_reqs, 'bench': bench_reqs},
    python_requires='>=' + min_python, long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown', zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f"{c['lib_path']}={c['lib_path']}._modidx:d"]},
)
