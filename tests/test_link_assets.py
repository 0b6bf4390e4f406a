"""scripts/link_assets.py: weights and sets appear where shipped option files name them; nothing is replaced."""
import subprocess
import sys

from conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / 'scripts' / 'link_assets.py'), *args], capture_output=True,
                          text=True, timeout=120)


def test_links_weights_and_sets_and_never_replaces(tmp_path):
    shared, root = tmp_path / 'shared', tmp_path / 'repo'
    (shared / 'weights' / 'EIMN').mkdir(parents=True)
    (shared / 'weights' / 'EIMN' / 'EIMN_A_x2.pth').write_bytes(b'w')
    (shared / 'data' / 'Set5' / 'GTmod12').mkdir(parents=True)
    mine = root / 'experiments' / 'pretrained_models' / 'EIMN' / 'EIMN_L_x2.pth'
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b'mine')
    (shared / 'weights' / 'EIMN' / 'EIMN_L_x2.pth').write_bytes(b'theirs')

    result = run('--shared', str(shared), '--root', str(root))
    assert result.returncode == 0, result.stderr
    linked = root / 'experiments' / 'pretrained_models' / 'EIMN' / 'EIMN_A_x2.pth'
    assert linked.is_symlink() and linked.read_bytes() == b'w'
    assert (root / 'datasets' / 'Set5' / 'GTmod12').is_dir()
    assert mine.read_bytes() == b'mine' and f'left {mine}' in result.stdout
    again = run('--shared', str(shared), '--root', str(root))
    assert again.returncode == 0 and f'kept {linked}' in again.stdout


def test_missing_folder_is_one_clear_error(tmp_path):
    result = run('--weights', str(tmp_path / 'nowhere'), '--root', str(tmp_path))
    assert result.returncode == 2 and 'srkit: error: --weights' in result.stderr and 'Traceback' not in result.stderr
